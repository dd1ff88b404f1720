//! Both backends through the AWS SDK over HTTP, as xosfs will use them.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier, Tag, Tagging,
};
use aws_sdk_s3::Client;
use tempfile::TempDir;
use xosfs_testserver::{Backend, FaultAction, FaultRule, ServerConfig, TestServer};

const BUCKET: &str = "bucket";

struct Env {
    server: TestServer,
    client: Client,
    rt: tokio::runtime::Runtime,
    root: Option<TempDir>,
}

impl Env {
    fn memory() -> Env {
        Env::start(Backend::Memory, None)
    }

    fn fs() -> Env {
        let root = tempfile::tempdir().unwrap();
        Env::start(Backend::Fs(root.path().to_path_buf()), Some(root))
    }

    fn both() -> [Env; 2] {
        [Env::memory(), Env::fs()]
    }

    fn start(backend: Backend, root: Option<TempDir>) -> Env {
        let server = TestServer::start(ServerConfig { backend, ..ServerConfig::default() }).unwrap();
        let client = client(&server, server.access_key(), server.secret_key());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let env = Env { server, client, rt, root };
        env.run(env.client.create_bucket().bucket(BUCKET).send()).unwrap();
        env
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn put(&self, key: &str, data: impl Into<Vec<u8>>) {
        let body = ByteStream::from(data.into());
        self.run(self.client.put_object().bucket(BUCKET).key(key).body(body).send())
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    fn put_many(&self, keys: &[String]) {
        self.run(async {
            let mut tasks = tokio::task::JoinSet::new();
            for key in keys {
                let (client, key) = (self.client.clone(), key.clone());
                tasks.spawn(async move {
                    client
                        .put_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .body(ByteStream::from_static(b"x"))
                        .send()
                        .await
                        .unwrap()
                });
                while tasks.len() >= 32 {
                    tasks.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        });
    }

    fn get(&self, key: &str, range: Option<&str>) -> Result<(Vec<u8>, Option<String>), String> {
        self.run(async {
            let out = self
                .client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .set_range(range.map(Into::into))
                .send()
                .await
                .map_err(|e| code(&e))?;
            let content_range = out.content_range().map(str::to_owned);
            Ok((out.body.collect().await.unwrap().to_vec(), content_range))
        })
    }

    fn head(&self, key: &str) -> Result<i64, String> {
        let out = self.run(self.client.head_object().bucket(BUCKET).key(key).send()).map_err(|e| code(&e))?;
        Ok(out.content_length().unwrap())
    }

    /// Every object and common prefix of a v1 listing, following NextMarker (or the last key
    /// without a delimiter, as clients do); also returns the number of pages.
    fn list_v1(&self, prefix: &str, delimiter: Option<&str>) -> (Vec<String>, usize) {
        let (mut names, mut pages, mut marker) = (Vec::new(), 0, None::<String>);
        loop {
            let req = self
                .client
                .list_objects()
                .bucket(BUCKET)
                .prefix(prefix)
                .set_delimiter(delimiter.map(Into::into))
                .set_marker(marker.clone());
            let out = self.run(req.send()).unwrap();
            pages += 1;
            let keys: Vec<String> = out.contents().iter().map(|o| o.key().unwrap().to_owned()).collect();
            names.extend(keys.iter().cloned());
            names.extend(out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()));
            if !out.is_truncated().unwrap() {
                return (names, pages);
            }
            marker = match delimiter {
                Some(_) => Some(out.next_marker().expect("NextMarker with a delimiter").to_owned()),
                None => keys.last().cloned(),
            };
        }
    }

    fn list_v2(&self, prefix: &str, delimiter: Option<&str>, max_keys: i32) -> (Vec<String>, usize) {
        let (mut names, mut pages, mut token) = (Vec::new(), 0, None::<String>);
        loop {
            let req = self
                .client
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .max_keys(max_keys)
                .set_delimiter(delimiter.map(Into::into))
                .set_continuation_token(token.clone());
            let out = self.run(req.send()).unwrap();
            pages += 1;
            let before = names.len();
            names.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
            names.extend(out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()));
            assert_eq!(out.key_count(), Some((names.len() - before) as i32));
            if !out.is_truncated().unwrap() {
                return (names, pages);
            }
            token = Some(out.next_continuation_token().unwrap().to_owned());
        }
    }
}

fn client(server: &TestServer, access_key: &str, secret_key: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

/// "STATUS CODE" of a failed request, e.g. "404 NoSuchKey".
fn code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> String {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    format!("{status} {}", e.code().unwrap_or("?"))
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn put_get_and_ranges() {
    for env in Env::both() {
        let body = data(1000);
        env.put("f.bin", body.clone());
        assert_eq!(env.get("f.bin", None).unwrap(), (body.clone(), None));
        assert_eq!(env.head("f.bin"), Ok(1000));
        let (part, range) = env.get("f.bin", Some("bytes=10-19")).unwrap();
        assert_eq!((part.as_slice(), range.as_deref()), (&body[10..20], Some("bytes 10-19/1000")));
        let (part, range) = env.get("f.bin", Some("bytes=990-")).unwrap();
        assert_eq!((part.as_slice(), range.as_deref()), (&body[990..], Some("bytes 990-999/1000")));
        let (part, range) = env.get("f.bin", Some("bytes=-5")).unwrap();
        assert_eq!((part.as_slice(), range.as_deref()), (&body[995..], Some("bytes 995-999/1000")));
        assert_eq!(env.get("f.bin", Some("bytes=1000-")).unwrap_err(), "416 InvalidRange");
        assert_eq!(env.get("missing", None).unwrap_err(), "404 NoSuchKey");
    }
}

#[test]
fn empty_object_ignores_range_in_memory() {
    let env = Env::memory();
    env.put("empty", "");
    assert_eq!(env.get("empty", Some("bytes=0-")).unwrap(), (Vec::new(), None));
}

/// 2,400 files and 100 subdirectories under `p/`, plus noise outside the prefix. s3s-fs
/// serves plain files, so its bucket is filled on disk directly to keep the test fast.
fn seed_listing(env: &Env) -> BTreeSet<String> {
    let mut keys: Vec<String> = (0..2400).map(|i| format!("p/f{i:04}")).collect();
    keys.extend((0..100).map(|i| format!("p/s{i:03}/inner")));
    keys.push("q/outside".into());
    match &env.root {
        Some(root) => {
            for key in &keys {
                let path = root.path().join(BUCKET).join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, "x").unwrap();
            }
        }
        None => env.put_many(&keys),
    }
    keys.into_iter().filter(|k| k.starts_with("p/")).collect()
}

/// v1 pages through Marker/NextMarker, v2 through continuation tokens; both see each key
/// or common prefix exactly once, in order.
#[test]
fn listings_page_through_2500_entries() {
    for env in Env::both() {
        let keys = seed_listing(&env);
        let all: Vec<String> = keys.iter().cloned().collect();
        let rolled_up: Vec<String> = keys
            .iter()
            .map(|k| if k.starts_with("p/s") { k[..7].to_owned() } else { k.clone() })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(env.list_v1("p/", None), (all.clone(), 3));
        assert_eq!(env.list_v1("p/", Some("/")), (rolled_up.clone(), 3));
        assert_eq!(env.list_v1("", Some("/")), (vec!["p/".to_owned(), "q/".to_owned()], 1));

        assert_eq!(env.list_v2("p/", None, 1000), (all, 3));
        assert_eq!(env.list_v2("p/", Some("/"), 700), (rolled_up, 4));
        let out = env
            .run(env.client.list_objects_v2().bucket(BUCKET).prefix("p/").start_after("p/f2398").max_keys(2).send())
            .unwrap();
        let got: Vec<&str> = out.contents().iter().map(|o| o.key().unwrap()).collect();
        assert_eq!(got, ["p/f2399", "p/s000/inner"]);
    }
}

#[test]
fn memory_namespace_is_flat() {
    let env = Env::memory();
    for key in ["a", "a/b", "a//b", "x/./y"] {
        env.put(key, key);
    }
    let marker =
        env.client.put_object().bucket(BUCKET).key("dir/").metadata("mode", "0755").body(ByteStream::from_static(b""));
    env.run(marker.send()).unwrap();
    for key in ["a", "a/b", "a//b", "x/./y"] {
        assert_eq!(env.get(key, None).unwrap().0, key.as_bytes());
    }
    let head = env.run(env.client.head_object().bucket(BUCKET).key("dir/").send()).unwrap();
    assert_eq!((head.content_length(), head.metadata().unwrap()["mode"].as_str()), (Some(0), "0755"));
    assert_eq!(env.head("dir").unwrap_err(), "404 NotFound");
    let (names, _) = env.list_v1("", Some("/"));
    assert_eq!(names, ["a", "a/", "dir/", "x/"]);
    let (names, _) = env.list_v1("a/", Some("/"));
    assert_eq!(names, ["a/b", "a//"]);
}

#[test]
fn fs_directory_keys_are_not_found() {
    let env = Env::fs();
    env.put("dir/sub/file", "f");
    for key in ["dir", "dir/", "dir/sub", "dir/sub/"] {
        assert_eq!(env.head(key).unwrap_err(), "404 NotFound", "HEAD {key}");
        assert_eq!(env.get(key, None).unwrap_err(), "404 NoSuchKey", "GET {key}");
    }
    assert_eq!(env.get("dir/sub/file", None).unwrap().0, b"f");
}

fn upload_parts(env: &Env, key: &str, parts: &[Vec<u8>]) -> (String, Vec<CompletedPart>) {
    env.run(async {
        let id = env
            .client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .content_type("video/mp4")
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        let mut done = Vec::new();
        for (n, body) in (1..).zip(parts) {
            let out = env
                .client
                .upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap();
            done.push(CompletedPart::builder().part_number(n).set_e_tag(out.e_tag).build());
        }
        (id, done)
    })
}

fn complete(env: &Env, key: &str, id: &str, parts: Vec<CompletedPart>) -> Result<String, String> {
    let upload = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    let req = env.client.complete_multipart_upload().bucket(BUCKET).key(key).upload_id(id).multipart_upload(upload);
    env.run(req.send()).map(|o| o.e_tag.unwrap()).map_err(|e| code(&e))
}

#[test]
fn multipart_completes_on_both_backends() {
    for env in Env::both() {
        let parts = vec![data(5 << 20), data(1234)];
        let (id, done) = upload_parts(&env, "big.mp4", &parts);
        let etag = complete(&env, "big.mp4", &id, done).unwrap();
        assert!(etag.ends_with("-2\""), "multipart ETag {etag}");
        assert_eq!(env.get("big.mp4", None).unwrap().0, parts.concat());
    }
}

#[test]
fn memory_multipart_lists_validates_and_aborts() {
    let env = Env::memory();
    let (small, small_parts) = upload_parts(&env, "small", &[data(100), data(100)]);
    let (big, big_parts) = upload_parts(&env, "big", &[data(5 << 20), data(10)]);
    let (_, _) = upload_parts(&env, "big", &[data(1)]);

    let all = env.run(env.client.list_multipart_uploads().bucket(BUCKET).send()).unwrap();
    let listed: Vec<(&str, &str)> = all.uploads().iter().map(|u| (u.key().unwrap(), u.upload_id().unwrap())).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], ("small", small.as_str()));
    let page = env
        .run(
            env.client
                .list_multipart_uploads()
                .bucket(BUCKET)
                .max_uploads(1)
                .key_marker("big")
                .upload_id_marker(listed[0].1)
                .send(),
        )
        .unwrap();
    assert_eq!(page.uploads()[0].upload_id(), Some(listed[1].1));
    assert_eq!((page.is_truncated(), page.next_key_marker()), (Some(true), Some("big")));
    let parts = env.run(env.client.list_parts().bucket(BUCKET).key("big").upload_id(&big).send()).unwrap();
    assert_eq!(parts.parts().iter().map(|p| p.size().unwrap()).collect::<Vec<_>>(), [5 << 20, 10]);

    assert_eq!(complete(&env, "small", &small, small_parts.clone()).unwrap_err(), "400 EntityTooSmall");
    let wrong = vec![big_parts[0].clone(), CompletedPart::builder().part_number(2).e_tag("\"00\"").build()];
    assert_eq!(complete(&env, "big", &big, wrong).unwrap_err(), "400 InvalidPart");
    let reversed = vec![big_parts[1].clone(), big_parts[0].clone()];
    assert_eq!(complete(&env, "big", &big, reversed).unwrap_err(), "400 InvalidPartOrder");

    for u in all.uploads() {
        env.run(
            env.client
                .abort_multipart_upload()
                .bucket(BUCKET)
                .key(u.key().unwrap())
                .upload_id(u.upload_id().unwrap())
                .send(),
        )
        .unwrap();
    }
    let after = env.run(env.client.list_multipart_uploads().bucket(BUCKET).send()).unwrap();
    assert!(after.uploads().is_empty());
    assert_eq!(complete(&env, "small", &small, small_parts).unwrap_err(), "404 NoSuchUpload");
}

#[test]
fn memory_copy_part_copy_delete_and_tags() {
    let env = Env::memory();
    let put = env.client.put_object().bucket(BUCKET).key("src").content_type("text/plain").metadata("k", "v");
    env.run(put.body(ByteStream::from(data(6 << 20))).send()).unwrap();

    env.run(env.client.copy_object().bucket(BUCKET).key("kept").copy_source(format!("{BUCKET}/src")).send()).unwrap();
    let replaced = env.client.copy_object().bucket(BUCKET).key("replaced").copy_source(format!("{BUCKET}/src"));
    env.run(replaced.metadata_directive(MetadataDirective::Replace).metadata("k", "new").send()).unwrap();
    let kept = env.run(env.client.head_object().bucket(BUCKET).key("kept").send()).unwrap();
    assert_eq!((kept.content_type(), kept.metadata().unwrap()["k"].as_str()), (Some("text/plain"), "v"));
    let replaced = env.run(env.client.head_object().bucket(BUCKET).key("replaced").send()).unwrap();
    assert_eq!(replaced.metadata().unwrap()["k"], "new");
    let to_itself = env.client.copy_object().bucket(BUCKET).key("src").copy_source(format!("{BUCKET}/src"));
    assert_eq!(env.run(to_itself.send()).map_err(|e| code(&e)).unwrap_err(), "400 InvalidRequest");

    let id =
        env.run(env.client.create_multipart_upload().bucket(BUCKET).key("joined").send()).unwrap().upload_id.unwrap();
    let mut parts = Vec::new();
    for (n, range) in [(1, "bytes=0-5242879"), (2, "bytes=5242880-6291455")] {
        let req = env
            .client
            .upload_part_copy()
            .bucket(BUCKET)
            .key("joined")
            .upload_id(&id)
            .part_number(n)
            .copy_source(format!("{BUCKET}/src"))
            .copy_source_range(range);
        let etag = env.run(req.send()).unwrap().copy_part_result.unwrap().e_tag;
        parts.push(CompletedPart::builder().part_number(n).set_e_tag(etag).build());
    }
    complete(&env, "joined", &id, parts).unwrap();
    assert_eq!(env.get("joined", None).unwrap().0, data(6 << 20));

    let tagging =
        Tagging::builder().tag_set(Tag::builder().key("color").value("blue").build().unwrap()).build().unwrap();
    env.run(env.client.put_object_tagging().bucket(BUCKET).key("src").tagging(tagging).send()).unwrap();
    let tags = env.run(env.client.get_object_tagging().bucket(BUCKET).key("src").send()).unwrap();
    assert_eq!(tags.tag_set()[0].value(), "blue");

    let ids = ["kept", "replaced", "never-existed"].map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
    let delete = Delete::builder().set_objects(Some(ids.to_vec())).build().unwrap();
    let out = env.run(env.client.delete_objects().bucket(BUCKET).delete(delete).send()).unwrap();
    assert_eq!(out.deleted().len(), 3);
    env.run(env.client.delete_object().bucket(BUCKET).key("never-existed").send()).unwrap();
    let (names, _) = env.list_v1("", None);
    assert_eq!(names, ["joined", "src"]);
}

#[test]
fn faults_inject_errors_and_delays() {
    for env in Env::both() {
        env.server.faults().add(FaultRule {
            op: "PutObject".into(),
            key_contains: Some("bad".into()),
            action: FaultAction::Error { status: 403 },
            remaining: Some(1),
        });
        let put = |key: &str| {
            env.run(env.client.put_object().bucket(BUCKET).key(key).body(ByteStream::from_static(b"x")).send())
                .map_err(|e| code(&e))
        };
        put("good").unwrap();
        assert_eq!(put("a-bad-key").unwrap_err(), "403 AccessDenied");
        put("a-bad-key").unwrap();

        env.server.faults().add(FaultRule {
            op: "HeadObject".into(),
            key_contains: None,
            action: FaultAction::Error { status: 404 },
            remaining: None,
        });
        assert!(env.head("good").is_err());
        assert!(env.head("good").is_err());
        env.server.faults().clear();
        assert_eq!(env.head("good"), Ok(1));

        env.server.faults().add(FaultRule {
            op: "GetObject".into(),
            key_contains: Some("good".into()),
            action: FaultAction::Delay(Duration::from_millis(300)),
            remaining: None,
        });
        env.server.stats().reset();
        let start = Instant::now();
        env.run(async {
            let gets = (0..4).map(|_| env.client.get_object().bucket(BUCKET).key("good").send());
            for r in futures::future::join_all(gets).await {
                r.unwrap();
            }
        });
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_millis(1100), "delays must not block each other");
        assert_eq!(env.server.stats().count("GetObject"), 4);
        assert!(env.server.stats().max_in_flight("GetObject") >= 2);
    }
}

#[test]
fn stats_count_each_operation() {
    for env in Env::both() {
        env.server.stats().reset();
        env.put("k", "v");
        env.head("k").unwrap();
        env.head("k").unwrap();
        env.list_v1("", None);
        env.list_v2("", None, 10);
        let stats = env.server.stats();
        let counts = ["PutObject", "HeadObject", "ListObjects", "ListObjectsV2", "GetObject"].map(|op| stats.count(op));
        assert_eq!(counts, [1, 2, 1, 1, 0]);
        assert_eq!(stats.max_in_flight("HeadObject"), 1);
        stats.reset();
        assert_eq!(stats.count("HeadObject"), 0);
    }
}

#[test]
fn wrong_credentials_are_rejected() {
    for env in Env::both() {
        let bad_secret = client(&env.server, env.server.access_key(), "not-the-secret");
        let err = env.run(bad_secret.list_objects_v2().bucket(BUCKET).send()).unwrap_err();
        assert_eq!(code(&err), "403 SignatureDoesNotMatch");
        let bad_key = client(&env.server, "someone-else", env.server.secret_key());
        let err = env.run(bad_key.list_objects_v2().bucket(BUCKET).send()).unwrap_err();
        assert_eq!(code(&err), "403 InvalidAccessKeyId");
        let err = env.run(env.client.head_bucket().bucket("nope").send()).unwrap_err();
        assert!(code(&err).starts_with("404"), "{}", code(&err));
    }
}
