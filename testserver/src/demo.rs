//! Demo bucket contents, uploaded over HTTP with the AWS SDK like any client would.

use std::error::Error;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use s3s::crypto::{Checksum, Crc32};
use xosfs_testserver::TestServer;

const PART_SIZE: usize = 8 << 20;

/// A path-style client with the server's credentials, computing checksums only when
/// required, which both backends accept.
pub fn client(server: &TestServer) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            server.access_key(),
            server.secret_key(),
            None,
            None,
            "xosfs-testserver",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

pub async fn ensure_bucket(client: &Client, bucket: &str) -> Result<(), Box<dyn Error>> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Uploads the demo files, skipping those already stored with the same size so that a
/// restarted persistent server is ready at once.
pub async fn seed(client: &Client, bucket: &str) -> Result<(), Box<dyn Error>> {
    for (key, content_type, data) in files() {
        if stored_size(client, bucket, key).await? == Some(data.len() as i64) {
            continue;
        }
        if data.len() > PART_SIZE {
            upload_multipart(client, bucket, key, content_type, data).await?;
        } else {
            let put = client.put_object().bucket(bucket).key(key).content_type(content_type);
            put.body(ByteStream::from(data)).send().await?;
        }
    }
    Ok(())
}

async fn stored_size(client: &Client, bucket: &str, key: &str) -> Result<Option<i64>, Box<dyn Error>> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(out.content_length()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn upload_multipart(
    client: &Client,
    bucket: &str,
    key: &str,
    content_type: &str,
    data: Vec<u8>,
) -> Result<(), Box<dyn Error>> {
    let created = client.create_multipart_upload().bucket(bucket).key(key).content_type(content_type).send().await?;
    let upload_id = created.upload_id().ok_or("no upload id")?;
    let uploads = data.chunks(PART_SIZE).zip(1..).map(|(chunk, number)| async move {
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await?;
        Ok::<_, Box<dyn Error>>(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build())
    });
    let parts = futures::future::try_join_all(uploads).await?;
    let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(completed)
        .send()
        .await?;
    Ok(())
}

/// (key, content type, bytes): nested folders, text, an image, and a video-sized blob.
fn files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let numbers: String = std::iter::once("n,square,cube\n".to_owned())
        .chain((1..=1000u64).map(|n| format!("{n},{},{}\n", n * n, n * n * n)))
        .collect();
    vec![
        ("hello.txt", "text/plain", b"Hello from xosfs!\n".to_vec()),
        (
            "docs/readme.txt",
            "text/plain",
            b"This bucket is served by xosfs-testserver and mounted by xosfs.\nFolders are key prefixes.\n".to_vec(),
        ),
        ("docs/notes/todo.md", "text/markdown", b"# TODO\n\n- [x] mount a bucket\n- [ ] write a file back\n".to_vec()),
        ("data/numbers.csv", "text/csv", numbers.into_bytes()),
        ("photos/2024/sunset.png", "image/png", gradient_png(64, 64)),
        ("videos/sample.bin", "application/octet-stream", xosfs_testserver::pseudo_random_bytes(32 << 20, 0x5eed)),
    ]
}

/// A valid RGB PNG with a sunset-like gradient, encoded by hand (zlib stored blocks) so the
/// demo needs no image crate.
fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let (fx, fy) = (x * 255 / (width - 1), y * 255 / (height - 1));
            raw.extend_from_slice(&[255 - fy as u8 / 3, (160 - fy * 150 / 255) as u8, (fy * 3 / 4 + fx / 4) as u8]);
        }
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter method, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn png_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = Crc32::checksum(&png[start..]);
    png.extend_from_slice(&crc);
}

/// zlib stream of uncompressed deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(0xffff).peekable();
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_valid_structure_and_crcs() {
        let png = gradient_png(64, 64);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // The empty IEND chunk has a well-known CRC.
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xae\x42\x60\x82");
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        assert_eq!(idat_len, 2 + 5 + 64 * (1 + 64 * 3) + 4);
    }
}
