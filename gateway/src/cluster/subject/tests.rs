use proptest::prelude::*;

use super::*;
use crate::mqtt::topic::matches;

const P: &str = "gm";

#[test]
fn topics_become_subjects() {
    let cases: &[(&str, &str)] = &[
        ("a", "gm.m1.n.a"),
        ("sport/tennis/player1", "gm.m1.n.sport.tennis.player1"),
        ("a//b", "gm.m1.n.a.%.b"),
        ("/a", "gm.m1.n.%.a"),
        ("a/", "gm.m1.n.a.%"),
        ("/", "gm.m1.n.%.%"),
        ("a.b", "gm.m1.n.a%2Eb"),
        ("*", "gm.m1.n.%2A"),
        ("a/>", "gm.m1.n.a.%3E"),
        ("100%", "gm.m1.n.100%25"),
        ("%", "gm.m1.n.%25"),
        ("Accounts payable", "gm.m1.n.Accounts%20payable"),
        ("tab\there", "gm.m1.n.tab%09here"),
        ("cr\r\nlf", "gm.m1.n.cr%0D%0Alf"),
        ("del\u{7f}", "gm.m1.n.del%7F"),
        ("nbsp\u{a0}", "gm.m1.n.nbsp%C2%A0"),
        ("bad\u{fffd}", "gm.m1.n.bad%EF%BF%BD"),
        ("$SYS/x", "gm.m1.s.$SYS.x"),
        ("$", "gm.m1.s.$"),
        ("a/$SYS", "gm.m1.n.a.$SYS"),
        ("ünïcödé/ツ", "gm.m1.n.ünïcödé.ツ"),
        ("a-b_c=d~e", "gm.m1.n.a-b_c=d~e"),
    ];
    for &(topic, want) in cases {
        assert_eq!(topic_subject(P, Space::Qos12, topic).as_deref(), Ok(want), "{topic:?}");
        let back = subject_topic(P, want).unwrap();
        assert_eq!(back, (Space::Qos12, topic.to_owned()), "{want:?}");
    }
}

#[test]
fn spaces_and_prefixes_are_the_first_tokens() {
    assert_eq!(topic_subject("gm", Space::Qos0, "a").unwrap(), "gm.m0.n.a");
    assert_eq!(topic_subject("gm", Space::Retained, "a").unwrap(), "gm.r.n.a");
    assert_eq!(topic_subject("prod.gm", Space::Qos12, "a").unwrap(), "prod.gm.m1.n.a");
    assert_eq!(subject_topic("prod.gm", "prod.gm.r.n.a").unwrap(), (Space::Retained, "a".into()));
    for prefix in ["", ".", "a.", "a..b", "*", "a.>", "a b", "a%b", "ü"] {
        assert_eq!(
            topic_subject(prefix, Space::Qos0, "a"),
            Err(SubjectError::InvalidPrefix(prefix.into())),
            "{prefix:?}"
        );
    }
}

#[test]
fn long_topics_are_refused() {
    // `gm.m1.n.` is 8 bytes: a 2,040-byte topic is the longest that fits.
    let fits = "a".repeat(MAX_SUBJECT_LEN - 8);
    let subject = topic_subject(P, Space::Qos12, &fits).unwrap();
    assert_eq!(subject.len(), MAX_SUBJECT_LEN);
    assert_eq!(subject_topic(P, &subject).unwrap().1, fits);
    let over = "a".repeat(MAX_SUBJECT_LEN - 7);
    assert_eq!(
        topic_subject(P, Space::Qos12, &over),
        Err(SubjectError::TooLong { len: MAX_SUBJECT_LEN + 1 })
    );
    // Escaping can push a topic that looked short enough over the limit.
    let dots = ".".repeat(700);
    assert!(matches!(
        topic_subject(P, Space::Qos12, &dots),
        Err(SubjectError::TooLong { len }) if len == 8 + 3 * 700
    ));
    let filter = format!("{}/#", "b".repeat(MAX_SUBJECT_LEN - 8));
    assert!(matches!(
        filter_subjects(P, Space::Qos12, &filter),
        Err(SubjectError::TooLong { len }) if len == MAX_SUBJECT_LEN + 2
    ));
}

#[test]
fn junk_subjects_are_refused() {
    let foreign = ["other.m1.n.a", "gm", "gmx.m1.n.a", "g.m1.n.a"];
    for subject in foreign {
        assert!(
            matches!(subject_topic(P, subject), Err(SubjectError::ForeignSubject { .. })),
            "{subject:?}"
        );
    }
    let malformed = [
        "gm.",
        "gm.m2.n.a",
        "gm.m1",
        "gm.m1.n",
        "gm.m1.x.a",
        "gm.m1.s.a",
        "gm.m1.n.$SYS",
        "gm.m1.n.a..b",
        "gm.m1.n.a.",
        "gm.m1.n.%2e",
        "gm.m1.n.%61",
        "gm.m1.n.%2",
        "gm.m1.n.%%",
        "gm.m1.n.a%",
        "gm.m1.n.%FF",
        "gm.m1.n.*",
        "gm.m1.n.>",
        "gm.m1.n.a b",
    ];
    for subject in malformed {
        assert!(
            matches!(subject_topic(P, subject), Err(SubjectError::Malformed { .. })),
            "{subject:?}: {:?}",
            subject_topic(P, subject)
        );
    }
}

#[test]
fn filters_become_subjects() {
    let cases: &[(&str, &[&str])] = &[
        ("a", &["gm.m1.n.a"]),
        ("a/+/c", &["gm.m1.n.a.*.c"]),
        ("+", &["gm.m1.n.*"]),
        ("+/x", &["gm.m1.n.*.x"]),
        ("#", &["gm.m1.n.>"]),
        ("a/#", &["gm.m1.n.a", "gm.m1.n.a.>"]),
        ("+/#", &["gm.m1.n.*", "gm.m1.n.*.>"]),
        ("/#", &["gm.m1.n.%", "gm.m1.n.%.>"]),
        ("a//#", &["gm.m1.n.a.%", "gm.m1.n.a.%.>"]),
        ("a//b", &["gm.m1.n.a.%.b"]),
        ("$SYS/#", &["gm.m1.s.$SYS", "gm.m1.s.$SYS.>"]),
        ("$SYS/+", &["gm.m1.s.$SYS.*"]),
        ("a.b/*/>", &["gm.m1.n.a%2Eb.%2A.%3E"]),
        ("a b/100%", &["gm.m1.n.a%20b.100%25"]),
    ];
    for &(filter, want) in cases {
        assert_eq!(filter_subjects(P, Space::Qos12, filter).unwrap(), want, "{filter:?}");
    }
    for filter in ["", "a/#/b", "a#", "a/b+", "#/", "a\0"] {
        assert_eq!(
            filter_subjects(P, Space::Qos12, filter),
            Err(SubjectError::InvalidFilter(filter.into())),
            "{filter:?}"
        );
    }
}

#[test]
fn sys_topics_are_out_of_reach_of_leading_wildcards() {
    let sys = topic_subject(P, Space::Qos12, "$SYS/x").unwrap();
    for filter in ["#", "+/x", "+/+", "+/#"] {
        let subjects = filter_subjects(P, Space::Qos12, filter).unwrap();
        assert!(!any_matches(&subjects, &sys), "{filter:?} reached {sys:?}");
    }
    for filter in ["$SYS/x", "$SYS/#", "$SYS/+"] {
        let subjects = filter_subjects(P, Space::Qos12, filter).unwrap();
        assert!(any_matches(&subjects, &sys), "{filter:?} missed {sys:?}");
    }
}

#[test]
fn the_nats_matcher_follows_nats() {
    let cases: &[(&str, &str, bool)] = &[
        ("a.b", "a.b", true),
        ("a.*", "a.b", true),
        ("a.*", "a", false),
        ("a.*", "a.b.c", false),
        ("a.>", "a.b.c", true),
        ("a.>", "a", false),
        (">", "a", true),
        ("*.b", "a.b", true),
        ("a.b", "a.c", false),
    ];
    for &(filter, subject, want) in cases {
        assert_eq!(nats_matches(filter, subject), want, "{filter} vs {subject}");
    }
}

#[test]
fn nats_matching_equals_mqtt_matching_on_every_short_pair() {
    // Every filter and topic of up to three levels from a small alphabet: the proptests below
    // reach further, this one cannot miss a short corner.
    let topics = sequences(&["a", "", "$a", "*", ".", "%"], 3);
    let mut filters = sequences(&["a", "+", "", "$a", "*"], 3);
    filters.retain(|filter| !filter.is_empty());
    let with_hash: Vec<String> = filters.iter().map(|filter| format!("{filter}/#")).collect();
    filters.extend(with_hash);
    filters.push("#".into());
    let (mut hits, mut misses) = (0, 0);
    for filter in &filters {
        let subjects = filter_subjects(P, Space::Qos12, filter).unwrap();
        for topic in &topics {
            let subject = topic_subject(P, Space::Qos12, topic).unwrap();
            let want = matches(filter, topic);
            assert_eq!(any_matches(&subjects, &subject), want, "{filter:?} {topic:?}");
            if want { hits += 1 } else { misses += 1 }
        }
    }
    // A generator that never produced a match would prove nothing.
    assert!(hits > 1_000 && misses > 1_000, "{hits} matches, {misses} misses");
}

/// Every `/`-joined sequence of 1 to `max` levels from `levels`.
fn sequences(levels: &[&str], max: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut last: Vec<String> = levels.iter().map(|level| level.to_string()).collect();
    for _ in 1..max {
        let next = last
            .iter()
            .flat_map(|prefix| levels.iter().map(move |level| format!("{prefix}/{level}")))
            .collect();
        all.append(&mut std::mem::replace(&mut last, next));
    }
    all.append(&mut last);
    all
}

/// NATS subject matching, token by token: `*` takes one token, a last `>` one or more.
fn nats_matches(filter: &str, subject: &str) -> bool {
    let subject: Vec<&str> = subject.split('.').collect();
    let filter: Vec<&str> = filter.split('.').collect();
    for (i, token) in filter.iter().enumerate() {
        if *token == ">" {
            return subject.len() > i;
        }
        match subject.get(i) {
            Some(s) if *token == "*" || token == s => {}
            _ => return false,
        }
    }
    filter.len() == subject.len()
}

fn any_matches(filters: &[String], subject: &str) -> bool {
    filters.iter().any(|f| nats_matches(f, subject))
}

/// What nats-server accepts as a literal subject to publish to (its `IsValidLiteralSubject`
/// with the rune check): non-empty tokens, no whitespace, NUL or U+FFFD, no wildcard token.
fn valid_literal_subject(subject: &str) -> bool {
    subject.split('.').all(|token| {
        !token.is_empty()
            && token != "*"
            && token != ">"
            && !token.contains([' ', '\t', '\n', '\r', '\x0c', '\0', '\u{FFFD}'])
    })
}

/// Topic levels drawn from the characters that collide with NATS syntax or the escape.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("$a".to_owned()),
        Just("*".to_owned()),
        Just(">".to_owned()),
        Just(".".to_owned()),
        Just("%".to_owned()),
        Just("%25".to_owned()),
        Just(" ".to_owned()),
        "[ab/.*>% $é\t]{1,3}".prop_map(|s| s.replace('/', "")),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/")),
        "[ab/.*>% $é\t]{0,12}",
    ]
}

/// Filters from levels `a`, `b`, `+`, empty and some literal NATS syntax, with `#` at the end
/// or not.
fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just(""),
        Just("a"),
        Just("b"),
        Just("+"),
        Just("$a"),
        Just("*"),
        Just("."),
        Just("%"),
    ];
    (prop::collection::vec(level, 0..4), any::<bool>())
        .prop_map(|(levels, hash)| {
            let mut filter = levels.join("/");
            match (levels.is_empty(), hash) {
                (true, _) => filter.push('#'),
                (false, true) => filter.push_str("/#"),
                (false, false) => {}
            }
            filter
        })
        .prop_filter("MQTT has no empty filter", |filter| !filter.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_subject_reads_back_as_its_topic(topic in topic(), space in 0..3usize) {
        let space = [Space::Qos0, Space::Qos12, Space::Retained][space];
        let subject = topic_subject(P, space, &topic).unwrap();
        prop_assert!(valid_literal_subject(&subject), "{subject:?}");
        prop_assert_eq!(subject_topic(P, &subject).unwrap(), (space, topic));
    }

    #[test]
    fn any_string_round_trips(topic in any::<String>()) {
        let subject = topic_subject(P, Space::Qos12, &topic).unwrap();
        prop_assert!(valid_literal_subject(&subject), "{subject:?}");
        prop_assert_eq!(subject_topic(P, &subject).unwrap().1, topic);
    }

    #[test]
    fn distinct_topics_get_distinct_subjects(a in topic(), b in topic()) {
        let sa = topic_subject(P, Space::Qos12, &a).unwrap();
        let sb = topic_subject(P, Space::Qos12, &b).unwrap();
        prop_assert_eq!(a == b, sa == sb, "{:?} -> {:?}, {:?} -> {:?}", a, sa, b, sb);
    }

    #[test]
    fn nats_matching_equals_mqtt_matching(filter in filter(), topic in topic()) {
        let subjects = filter_subjects(P, Space::Qos12, &filter).unwrap();
        let subject = topic_subject(P, Space::Qos12, &topic).unwrap();
        prop_assert_eq!(
            any_matches(&subjects, &subject),
            matches(&filter, &topic),
            "filter {:?} -> {:?}, topic {:?} -> {:?}", filter, subjects, topic, subject
        );
    }

    #[test]
    fn a_subject_in_another_space_never_matches(filter in filter(), topic in topic()) {
        let subjects = filter_subjects(P, Space::Qos0, &filter).unwrap();
        let subject = topic_subject(P, Space::Retained, &topic).unwrap();
        prop_assert!(!any_matches(&subjects, &subject));
    }
}
