//! What XOS knows of objects and buckets, through the mount, against moto's S3 server:
//! multipart uploads, tags, ACLs, presigned URLs, versions and bucket settings.

mod common;

use common::{sha256, Moto, BUCKET};

#[test]
fn a_100_mib_copy_into_a_moto_backed_mount_is_stored_whole() {
    let moto = Moto::start();
    let m = moto.mount(&[]);
    let local = tempfile::tempdir().unwrap();
    let data = xosfs_testserver::pseudo_random_bytes(100 << 20, 7);
    std::fs::write(local.path().join("big.bin"), &data).unwrap();

    let cp =
        std::process::Command::new("cp").arg(local.path().join("big.bin")).arg(m.join("big.bin")).status().unwrap();
    assert!(cp.success(), "cp of 100 MiB failed:\n{}", m.log());

    let stored = moto.stored("big.bin").expect("the object exists");
    assert_eq!(sha256(&stored), sha256(&data));
    let head = moto.block_on(moto.client.head_object().bucket(BUCKET).key("big.bin").send()).unwrap();
    assert!(head.e_tag().unwrap().contains('-'), "not a multipart upload: {:?}", head.e_tag());
}
