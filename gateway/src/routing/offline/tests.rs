use super::{OfflineError, list, mark_cluster, redrive, unmark_cluster};

#[test]
fn a_cluster_nodes_directory_is_refused_naming_where_its_dead_letters_are() {
    let dir = tempfile::tempdir().expect("a directory");
    mark_cluster(dir.path(), "gm", "GM_DLQ").expect("mark");
    let listed = list(dir.path(), None).expect_err("refused");
    assert!(matches!(&listed, OfflineError::ClusterNode { stream, .. } if stream == "GM_DLQ"));
    let message = listed.to_string();
    assert!(message.contains("cluster node") && message.contains("GM_DLQ"), "{message}");
    assert!(message.contains("deadLetters/redrive"), "{message}");
    let redriven = redrive(dir.path(), "orders/hook", None).expect_err("refused");
    assert!(matches!(redriven, OfflineError::ClusterNode { .. }), "{redriven}");
}

#[test]
fn a_directory_without_a_store_says_so() {
    let dir = tempfile::tempdir().expect("a directory");
    assert!(matches!(list(dir.path(), None), Err(OfflineError::NoStore(_))));
}

#[test]
fn a_directory_unmarked_for_a_single_node_is_read_again() {
    let dir = tempfile::tempdir().expect("a directory");
    assert_eq!(unmark_cluster(dir.path()).expect("nothing to unmark"), None);
    mark_cluster(dir.path(), "gm", "GM_DLQ").expect("mark");
    assert_eq!(unmark_cluster(dir.path()).expect("unmark"), Some("GM_DLQ".to_string()));
    assert!(matches!(list(dir.path(), None), Err(OfflineError::NoStore(_))));
}
