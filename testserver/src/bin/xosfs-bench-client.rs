//! The raw S3 client of `scripts/bench.sh`: what an S3 program does at its best against the
//! same endpoint (16 requests at once, 8 MiB ranges or parts), so filesystem figures can be
//! given as ratios to it. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
//! Prints the seconds the work took.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use clap::{Parser, Subcommand};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const PART: u64 = 8 << 20;
const PARALLEL: usize = 16;

#[derive(Parser)]
struct Opt {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    bucket: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read a whole object with parallel ranged GETs.
    Get { key: String },
    /// Write SIZE bytes as a parallel multipart upload.
    Put { key: String, size: u64 },
    /// Store COUNT objects of SIZE bytes under PREFIX, many at once.
    PutMany { prefix: String, count: usize, size: usize },
    /// COUNT small files one after another: PUT all, GET all, DELETE all.
    Small { prefix: String, count: usize },
    /// List every key under PREFIX (ListObjects v1, 1000 a page).
    List { prefix: String },
    /// COUNT random 64 KiB ranged GETs of KEY, one at a time (a single stream).
    Random { key: String, count: usize },
    /// Print how many keys are under PREFIX (instead of seconds).
    Count { prefix: String },
}

fn client(endpoint: &str) -> Result<Client, Box<dyn Error>> {
    let ak = std::env::var("AWS_ACCESS_KEY_ID")?;
    let sk = std::env::var("AWS_SECRET_ACCESS_KEY")?;
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "bench"))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(conf))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let opt = Opt::parse();
    let c = client(&opt.endpoint)?;
    let b = opt.bucket.clone();
    let start = Instant::now();
    match opt.cmd {
        Cmd::Get { key } => get(&c, &b, &key).await?,
        Cmd::Put { key, size } => put(&c, &b, &key, size).await?,
        Cmd::PutMany { prefix, count, size } => put_many(&c, &b, &prefix, count, size).await?,
        Cmd::Small { prefix, count } => small(&c, &b, &prefix, count).await?,
        Cmd::List { prefix } => drop(list(&c, &b, &prefix).await?),
        Cmd::Random { key, count } => random(&c, &b, &key, count).await?,
        Cmd::Count { prefix } => {
            println!("{}", list(&c, &b, &prefix).await?);
            return Ok(());
        }
    }
    println!("{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}

async fn get(c: &Client, b: &str, key: &str) -> Result<(), Box<dyn Error>> {
    let size = c.head_object().bucket(b).key(key).send().await?.content_length().unwrap_or(0) as u64;
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for start in (0..size).step_by(PART as usize) {
        let (c, b, key, slot) = (c.clone(), b.to_string(), key.to_string(), slots.clone().acquire_owned().await?);
        tasks.spawn(async move {
            let _slot = slot;
            let end = (start + PART).min(size) - 1;
            let out = c.get_object().bucket(b).key(key).range(format!("bytes={start}-{end}")).send().await?;
            out.body.collect().await.map(drop).map_err(|e| Box::new(e) as Box<dyn Error + Send + Sync>)?;
            Ok::<_, Box<dyn Error + Send + Sync>>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn put(c: &Client, b: &str, key: &str, size: u64) -> Result<(), Box<dyn Error>> {
    let id = c.create_multipart_upload().bucket(b).key(key).send().await?.upload_id().unwrap_or_default().to_string();
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for (i, start) in (0..size).step_by(PART as usize).enumerate() {
        let (c, b, key, id, slot) =
            (c.clone(), b.to_string(), key.to_string(), id.clone(), slots.clone().acquire_owned().await?);
        let len = (PART.min(size - start)) as usize;
        tasks.spawn(async move {
            let _slot = slot;
            let body = xosfs_testserver::pseudo_random_bytes(len, start + 1);
            let n = i as i32 + 1;
            let out = c
                .upload_part()
                .bucket(b)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .body(ByteStream::from(body))
                .send()
                .await?;
            Ok::<_, aws_sdk_s3::Error>(
                CompletedPart::builder().part_number(n).set_e_tag(out.e_tag().map(str::to_string)).build(),
            )
        });
    }
    let mut parts = Vec::new();
    while let Some(r) = tasks.join_next().await {
        parts.push(r??);
    }
    parts.sort_by_key(|p| p.part_number());
    let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    c.complete_multipart_upload().bucket(b).key(key).upload_id(id).multipart_upload(done).send().await?;
    Ok(())
}

async fn put_many(c: &Client, b: &str, prefix: &str, count: usize, size: usize) -> Result<(), Box<dyn Error>> {
    let slots = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let (c, b, slot) = (c.clone(), b.to_string(), slots.clone().acquire_owned().await?);
        let key = format!("{prefix}{i:06}");
        tasks.spawn(async move {
            let _slot = slot;
            c.put_object().bucket(b).key(key).body(ByteStream::from(vec![b'x'; size])).send().await.map(drop)
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

async fn small(c: &Client, b: &str, prefix: &str, count: usize) -> Result<(), Box<dyn Error>> {
    let keys: Vec<String> = (0..count).map(|i| format!("{prefix}{i:06}")).collect();
    for k in &keys {
        c.put_object().bucket(b).key(k).body(ByteStream::from(vec![b's'; 4096])).send().await?;
    }
    for k in &keys {
        c.get_object().bucket(b).key(k).send().await?.body.collect().await?;
    }
    for k in &keys {
        c.delete_object().bucket(b).key(k).send().await?;
    }
    Ok(())
}

async fn random(c: &Client, b: &str, key: &str, count: usize) -> Result<(), Box<dyn Error>> {
    let size = c.head_object().bucket(b).key(key).send().await?.content_length().unwrap_or(0) as u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let start = (x % (size - (64 << 10))) & !4095;
        let end = start + (64 << 10) - 1;
        c.get_object().bucket(b).key(key).range(format!("bytes={start}-{end}")).send().await?.body.collect().await?;
    }
    Ok(())
}

/// Lists every key under `prefix`; returns how many there are.
async fn list(c: &Client, b: &str, prefix: &str) -> Result<usize, Box<dyn Error>> {
    let mut marker: Option<String> = None;
    let mut count = 0;
    loop {
        let out = c.list_objects().bucket(b).prefix(prefix).delimiter("/").set_marker(marker.clone()).send().await?;
        count += out.contents().len();
        let last = out.contents().last().and_then(|o| o.key()).map(str::to_string);
        if !out.is_truncated().unwrap_or(false) {
            return Ok(count);
        }
        marker = out.next_marker().map(str::to_string).or(last);
    }
}
