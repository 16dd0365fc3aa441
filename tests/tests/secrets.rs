//! Credentials never show (SPEC section 9): the binaries run with recognisable
//! secrets in the environment and in URLs, with every log level on, and nothing they
//! print contains them. Each run fails (there is no server to reach), with a
//! one-line error and a non-zero exit.
#![allow(clippy::unwrap_used)]

use e2e::*;

const SECRET: &str = "hunter2-SECRET-7f3a";

fn assert_quiet(name: &str, args: &[&str], env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut c = pipeline_command(name, &data);
    c.args(args).env("RUST_LOG", "trace");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "{name} {args:?} should fail: {stderr}"
    );
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{name} {args:?} printed the secret:\n{stdout}\n{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("error"), "{name} {args:?}: {stderr}");
}

#[test]
fn credentials_never_appear_in_output() {
    // The Cassandra password from the environment, the server unreachable.
    let cassandra = [
        (
            "PIPELINE_SERVING_URL",
            "cassandra://127.0.0.1:9/analytics".to_owned(),
        ),
        ("PIPELINE_CASSANDRA_USERNAME", "alice".to_owned()),
        ("PIPELINE_CASSANDRA_PASSWORD", SECRET.to_owned()),
    ];
    assert_quiet("serving", &["query", "q3"], &cassandra);
    assert_quiet("serving", &["publish"], &cassandra);
    // Credentials written into URLs, where they do not belong.
    let in_url = format!("cassandra://alice:{SECRET}@127.0.0.1:9/analytics");
    assert_quiet(
        "serving",
        &["query", "q3"],
        &[("PIPELINE_SERVING_URL", in_url)],
    );
    let kafka = format!("kafka://alice:{SECRET}@127.0.0.1:9092");
    assert_quiet(
        "producer",
        &["topics"],
        &[("PIPELINE_LOG_URL", kafka.clone())],
    );
    assert_quiet(
        "processor",
        &["--until-idle", "--metrics-addr", "127.0.0.1:0"],
        &[("PIPELINE_LOG_URL", kafka.clone())],
    );
    assert_quiet("compactor", &["--once"], &[("PIPELINE_LOG_URL", kafka)]);
}
