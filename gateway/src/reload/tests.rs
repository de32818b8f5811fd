use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

use super::*;

/// Counts `gridmq_config_reloads_total` by its `result` label.
#[derive(Default)]
struct Reloads {
    counts: parking_lot::Mutex<BTreeMap<String, Arc<Count>>>,
}

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Reloads {
    fn count(&self, result: &str) -> u64 {
        self.counts.lock().get(result).map_or(0, |count| count.0.load(Ordering::Relaxed))
    }
}

impl Recorder for Reloads {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() != "gridmq_config_reloads_total" {
            return Counter::noop();
        }
        let result = key
            .labels()
            .find(|label| label.key() == "result")
            .map(|label| label.value().to_string())
            .unwrap_or_default();
        Counter::from_arc(self.counts.lock().entry(result).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

const BASE: &str =
    "[auth]\nallow_anonymous = true\n[topicSpaces.aaa]\ntopicTemplates = [\"a/#\"]\n";

#[test]
fn reloads_are_counted_and_a_refused_one_changes_nothing() {
    let recorder = Reloads::default();
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), BASE).expect("write");
    let config = Config::load(file.path()).expect("config");
    let namespace =
        Namespace::open(config.namespace_section(), &[]).expect("open").expect("namespace");
    let reloader = Reloader::new(config, Some(namespace.clone()), None);
    reloader.watch(file.path().to_path_buf(), Box::new(|_| {}));
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    metrics::with_local_recorder(&recorder, || {
        // A broken query: refused whole, with the field named.
        let broken = format!(
            "{BASE}[topicSpaces.bbb]\ntopicTemplates = [\"b/#\"]\n[clientGroups.ggg]\nquery = \"attributes.x = \"\n"
        );
        std::fs::write(file.path(), broken).expect("write");
        let error = runtime.block_on(reloader.reload()).expect_err("refused");
        assert!(error.to_string().contains("clientGroups[ggg].query"), "{error}");
        assert!(!namespace.resources().topic_spaces.contains_key("bbb"), "nothing applied");

        // A valid edit, with a restart-only change beside it.
        let edited = format!(
            "{BASE}[topicSpaces.bbb]\ntopicTemplates = [\"b/#\"]\n[mqtt]\nmax_packet_size = 4096\n"
        );
        std::fs::write(file.path(), edited).expect("write");
        let outcome = runtime.block_on(reloader.reload()).expect("applied");
        assert_eq!(outcome.applied, ["topicSpaces"]);
        assert_eq!(outcome.restart_required, ["mqtt"]);
        assert!(namespace.resources().topic_spaces.contains_key("bbb"));

        // The restart-only change is still pending on the next reload; nothing else is.
        let outcome = runtime.block_on(reloader.reload()).expect("applied");
        assert!(outcome.applied.is_empty(), "{outcome:?}");
        assert_eq!(outcome.restart_required, ["mqtt"]);
    });
    assert_eq!(recorder.count("refused"), 1);
    assert_eq!(recorder.count("applied"), 2);
}

#[test]
fn a_file_that_turns_access_control_off_waits_for_a_restart() {
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), BASE).expect("write");
    let config = Config::load(file.path()).expect("config");
    let namespace =
        Namespace::open(config.namespace_section(), &[]).expect("open").expect("namespace");
    let reloader = Reloader::new(config, Some(namespace.clone()), None);
    reloader.watch(file.path().to_path_buf(), Box::new(|_| {}));
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    std::fs::write(file.path(), "").expect("write");
    let outcome = runtime.block_on(reloader.reload()).expect("reloaded");
    assert!(outcome.applied.is_empty(), "{outcome:?}");
    assert!(outcome.restart_required.iter().any(|s| s == "topicSpaces"), "{outcome:?}");
    assert!(namespace.resources().topic_spaces.contains_key("aaa"), "the grants stay");
}
