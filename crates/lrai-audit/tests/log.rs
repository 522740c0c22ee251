//! The writer and the verifier together: what the server writes verifies, survives a
//! restart, and every kind of tampering is named at the entry where it starts.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use lrai_audit::verify::{VerifyOptions, verify_log};
use lrai_audit::{AdminAction, AuditConfig, AuditLog, InferenceRecord, TreeHead};
use lrai_core::{DataType, Tensor};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn config(path: &Path, interval: Duration) -> AuditConfig {
    AuditConfig {
        path: path.to_path_buf(),
        key: key(),
        head_interval: interval,
        inference: true,
        queue_capacity: 8,
    }
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        pubkey: key().verifying_key(),
        since: None,
        allow_unsigned_tail: false,
        allow_torn_tail: false,
    }
}

fn tensor(v: f32) -> Tensor {
    Tensor::new(
        DataType::F32,
        vec![1, 1],
        bytes::Bytes::from(v.to_le_bytes().to_vec()),
    )
    .unwrap()
}

async fn write_session(path: &Path, inferences: usize, interval: Duration) -> TreeHead {
    let log = AuditLog::open(config(path, interval)).unwrap();
    let index = log
        .record_admin(AdminAction::Load, "digits_mlp", "anonymous", "ok".into())
        .await
        .unwrap();
    // Durable when acknowledged: the entry is in the file already.
    let text = fs_err::read_to_string(path).unwrap();
    assert!(text.contains(&format!("{{\"index\":{index},")), "{text}");
    for i in 0..inferences {
        #[allow(clippy::cast_precision_loss)]
        let x = i as f32;
        log.record_inference(InferenceRecord {
            caller: "ci@127.0.0.1:1".into(),
            model: "digits_mlp".into(),
            version: "1".into(),
            protocol: "http",
            status: "ok".into(),
            inputs: vec![("input".into(), tensor(x))],
            outputs: vec![("output".into(), tensor(-x))],
        })
        .await;
    }
    log.close().await.unwrap()
}

#[tokio::test]
async fn what_the_writer_writes_verifies_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let first = write_session(&path, 100, Duration::ZERO).await;
    // start, load, 100 inferences, stop
    assert_eq!(first.size, 103);
    let v = verify_log(&path, &opts()).unwrap();
    assert_eq!((v.entries, v.unsigned_tail), (103, 0));
    assert_eq!(v.last_head.unwrap(), first);

    let second = write_session(&path, 10, Duration::from_secs(3600)).await;
    assert_eq!(second.size, 103 + 13);
    let since = VerifyOptions {
        since: Some((path.clone(), first)),
        ..opts()
    };
    verify_log(&path, &since).unwrap();
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let text = fs_err::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    f(&mut lines);
    fs_err::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn tampering_is_named_at_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_session(&path, 20, Duration::ZERO).await;
    let honest = fs_err::read(&path).unwrap();

    // A changed entry: the next head's root no longer matches.
    rewrite(&path, |l| l[2] = l[2].replace("digits_mlp", "digits_cnn"));
    let err = verify_log(&path, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("line 4 (entry 2)") && err.contains("an entry before this line was changed"),
        "{err}"
    );

    // A deleted entry: the next one is out of place.
    fs_err::write(&path, &honest).unwrap();
    rewrite(&path, |l| {
        l.remove(2);
    });
    let err = verify_log(&path, &opts()).unwrap_err().to_string();
    assert!(err.contains("(entry 1)"), "{err}");

    // Entries appended after the last head.
    fs_err::write(&path, &honest).unwrap();
    rewrite(&path, |l| {
        let n = l.iter().filter(|x| !x.starts_with("{\"head\"")).count();
        l.push(format!(r#"{{"index":{n},"time_ms":1,"kind":"admin","action":"load","model":"x","caller":"a","outcome":"ok"}}"#));
    });
    let err = verify_log(&path, &opts()).unwrap_err().to_string();
    assert!(err.contains("not covered by a signed tree head"), "{err}");

    // A truncation below a saved head.
    fs_err::write(&path, &honest).unwrap();
    let saved = verify_log(&path, &opts()).unwrap().last_head.unwrap();
    rewrite(&path, |l| l.truncate(10));
    let since = VerifyOptions {
        since: Some((path.clone(), saved)),
        allow_unsigned_tail: true,
        ..opts()
    };
    let err = verify_log(&path, &since).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
}
