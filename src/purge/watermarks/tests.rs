use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|tag| (*tag).to_owned()).collect()
}

fn entry<'a>(tags: &'a [String], path: &'a str, seq: u64) -> EntryRef<'a> {
    EntryRef { tags, path, seq }
}

#[test]
fn empty_map_finds_everything_valid() {
    let map = Watermarks::new();
    let product = tags(&["product:1"]);
    assert_eq!(map.verdict(entry(&product, "/a", 0)), Verdict::Valid);
    assert_eq!(map.current_seq(), 0);
    assert!(map.is_empty());
}

#[test]
fn fill_started_before_a_purge_is_invalid_and_one_started_after_is_valid() {
    let mut map = Watermarks::new();
    let product = tags(&["product:1"]);
    let before = map.current_seq();
    let seq = map.purge(Selector::tag("product:1"), false, t(0));
    let after = map.current_seq();
    assert_eq!(seq, before + 1);
    assert_eq!(after, seq);
    assert_eq!(
        map.verdict(entry(&product, "/p/1", before)),
        Verdict::Invalid
    );
    assert_eq!(map.verdict(entry(&product, "/p/1", after)), Verdict::Valid);
}

#[test]
fn only_covered_entries_are_affected() {
    let mut map = Watermarks::new();
    let stamped = map.current_seq();
    map.purge(Selector::tag("product:1"), false, t(0));
    map.purge(Selector::prefix("/api/products/"), true, t(0));
    let cases = [
        (
            tags(&["product:1", "route:products"]),
            "/x",
            Verdict::Invalid,
        ),
        (tags(&["product:2"]), "/x", Verdict::Valid),
        (tags(&["product:2"]), "/api/products/2", Verdict::Stale),
        (tags(&["product:1"]), "/api/products/1", Verdict::Invalid),
        (tags(&[]), "/api/products", Verdict::Valid),
        (tags(&[]), "/api/products/", Verdict::Stale),
        (tags(&[]), "/api/other/products/", Verdict::Valid),
    ];
    for (entry_tags, path, expected) in cases {
        let got = map.verdict(entry(&entry_tags, path, stamped));
        assert_eq!(got, expected, "{entry_tags:?} {path}");
    }
}

#[test]
fn hard_beats_soft_and_a_later_soft_never_weakens_an_earlier_hard() {
    let mut map = Watermarks::new();
    let product = tags(&["product:1"]);
    let first = map.current_seq();
    map.purge(Selector::tag("product:1"), true, t(0));
    assert_eq!(map.verdict(entry(&product, "/", first)), Verdict::Stale);
    map.purge(Selector::tag("product:1"), false, t(1));
    assert_eq!(map.verdict(entry(&product, "/", first)), Verdict::Invalid);
    let second = map.current_seq();
    map.purge(Selector::tag("product:1"), true, t(2));
    assert_eq!(map.verdict(entry(&product, "/", first)), Verdict::Invalid);
    assert_eq!(map.verdict(entry(&product, "/", second)), Verdict::Stale);
    // A hard mark on one tag wins over a soft one on another.
    map.purge(Selector::tag("other"), true, t(3));
    let both = tags(&["other", "product:1"]);
    assert_eq!(map.verdict(entry(&both, "/", first)), Verdict::Invalid);
}

#[test]
fn raises_never_lower_a_mark() {
    let mut map = Watermarks::new();
    let selector = Selector::tag("a");
    map.raise(selector.clone(), 10, false, t(5));
    map.raise(selector.clone(), 3, false, t(1));
    map.raise(selector.clone(), 4, true, t(2));
    let mark = map.mark(&selector).unwrap();
    assert_eq!((mark.hard, mark.soft, mark.raised_at), (10, 4, t(5)));
    assert_eq!(map.current_seq(), 10);
    map.raise(selector.clone(), 0, false, t(9));
    assert_eq!(
        map.mark(&selector),
        Some(mark),
        "sequence 0 records nothing"
    );
}

#[test]
fn raising_from_the_shared_counter_advances_the_local_sequence() {
    let mut map = Watermarks::new();
    map.raise(Selector::tag("a"), 41, false, t(0));
    assert_eq!(map.current_seq(), 41);
    assert_eq!(map.purge(Selector::All, false, t(0)), 42);
    map.advance_seq(100);
    assert_eq!(map.current_seq(), 100);
    map.advance_seq(7);
    assert_eq!(map.current_seq(), 100);
}

#[test]
fn all_covers_every_entry() {
    let mut map = Watermarks::new();
    let stamped = map.current_seq();
    map.purge(Selector::All, true, t(0));
    let none = tags(&[]);
    assert_eq!(map.verdict(entry(&none, "/", stamped)), Verdict::Stale);
    map.purge(Selector::All, false, t(0));
    let some = tags(&["x"]);
    assert_eq!(
        map.verdict(entry(&some, "/deep/path", stamped)),
        Verdict::Invalid
    );
    assert_eq!(
        map.verdict(entry(&some, "/", map.current_seq())),
        Verdict::Valid
    );
}

#[test]
fn prefixes_match_string_prefixes_among_many() {
    let mut map = Watermarks::new();
    let stamped = map.current_seq();
    for i in 0..2_000 {
        map.purge(Selector::prefix(format!("/api/items/{i}/")), false, t(0));
    }
    map.purge(Selector::prefix("/api/prod"), false, t(0));
    map.purge(Selector::prefix("/caf\u{e9}/"), false, t(0));
    let none = tags(&[]);
    let cases = [
        ("/api/items/7/reviews", Verdict::Invalid),
        ("/api/items/1999/", Verdict::Invalid),
        ("/api/items/2000/", Verdict::Valid),
        ("/api/items/7", Verdict::Valid),
        ("/api/products/1", Verdict::Invalid),
        ("/api/pro", Verdict::Valid),
        ("/caf\u{e9}/menu", Verdict::Invalid),
        ("/caf\u{e8}/menu", Verdict::Valid),
        (
            "/\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            Verdict::Valid,
        ),
        ("", Verdict::Valid),
    ];
    for (path, expected) in cases {
        assert_eq!(map.verdict(entry(&none, path, stamped)), expected, "{path}");
    }
    // Lengths in use, not prefixes, bound the lookups.
    assert!(map.prefix_lengths.len() <= 6, "{:?}", map.prefix_lengths);
}

#[test]
fn merge_takes_the_maximum_and_never_lowers() {
    let mut local = Watermarks::new();
    local.raise(Selector::tag("a"), 10, false, t(10));
    local.raise(Selector::tag("b"), 2, true, t(2));
    let mut loaded = Watermarks::new();
    loaded.raise(Selector::tag("a"), 5, false, t(5));
    loaded.raise(Selector::tag("b"), 8, true, t(8));
    loaded.raise(Selector::prefix("/x/"), 7, false, t(7));
    loaded.advance_seq(12);
    local.merge(&loaded);
    let mark = |map: &Watermarks, s: Selector| map.mark(&s).map(|m| (m.hard, m.soft, m.raised_at));
    assert_eq!(mark(&local, Selector::tag("a")), Some((10, 0, t(10))));
    assert_eq!(mark(&local, Selector::tag("b")), Some((0, 8, t(8))));
    assert_eq!(mark(&local, Selector::prefix("/x/")), Some((7, 0, t(7))));
    assert_eq!(local.current_seq(), 12);
    // Merging is idempotent.
    let before = local.clone();
    local.merge(&loaded);
    assert_eq!(local, before);
}

#[test]
fn drop_older_than_removes_only_old_marks() {
    let mut map = Watermarks::new();
    let old = map.current_seq();
    map.purge(Selector::tag("old"), false, t(0));
    map.purge(Selector::prefix("/old/"), false, t(0));
    map.purge(Selector::All, true, t(0));
    map.purge(Selector::tag("recent"), false, t(0));
    map.purge(Selector::tag("recent"), true, t(90));
    let max_age = Duration::from_secs(60);
    assert_eq!(
        map.drop_older_than(t(60), max_age),
        0,
        "exactly max_age old is kept"
    );
    assert_eq!(map.drop_older_than(t(100), max_age), 3);
    assert_eq!(map.len(), 1);
    assert!(map.prefix_lengths.is_empty());
    // The mark raised again recently keeps both of its sequences.
    let recent = tags(&["recent"]);
    assert_eq!(map.verdict(entry(&recent, "/", old)), Verdict::Invalid);
    let gone = tags(&["old"]);
    assert_eq!(map.verdict(entry(&gone, "/old/x", old)), Verdict::Valid);
    // The sequence never goes back, so new fills still stamp above every purge.
    assert_eq!(map.current_seq(), 5);
    assert_eq!(map.drop_older_than(t(1_000), max_age), 1);
    assert!(map.is_empty());
    assert_eq!(map.highest_mark, 0);
    assert_eq!(map.drop_older_than(SystemTime::UNIX_EPOCH, max_age), 0);
}

#[test]
fn shared_handle_sees_purges_from_any_clone() {
    let shared = SharedWatermarks::new();
    let other = shared.clone();
    let product = tags(&["product:1"]);
    let stamped = shared.current_seq();
    assert_eq!(
        shared.verdict(entry(&product, "/", stamped)),
        Verdict::Valid
    );
    let seq = other.purge(Selector::tag("product:1"), false, t(0));
    assert_eq!(
        shared.verdict(entry(&product, "/", stamped)),
        Verdict::Invalid
    );
    assert_eq!(shared.current_seq(), seq);
    other.raise(Selector::tag("x"), 50, true, t(0));
    other.raise_mark(Selector::tag("y"), Mark::new(51, false, t(0)));
    other.advance_seq(60);
    assert_eq!(shared.current_seq(), 60);
    let mut loaded = Watermarks::new();
    loaded.raise(Selector::All, 70, false, t(0));
    shared.merge(&loaded);
    assert_eq!(shared.verdict(entry(&product, "/", 69)), Verdict::Invalid);
    assert_eq!(shared.snapshot().len(), 4);
    assert_eq!(shared.drop_older_than(t(10), Duration::from_secs(1)), 4);
    assert_eq!(shared.verdict(entry(&product, "/", 0)), Verdict::Valid);
}

#[test]
fn shared_handle_is_usable_across_threads() {
    let shared = SharedWatermarks::new();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let shared = shared.clone();
            std::thread::spawn(move || shared.purge(Selector::tag(format!("t{i}")), false, t(0)))
        })
        .collect();
    let mut seqs: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[derive(Debug, Clone)]
struct Raise {
    selector: Selector,
    seq: u64,
    soft: bool,
    at: u64,
}

fn selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        "[abc]".prop_map(Selector::Tag),
        "/[ab\u{e9}]{0,3}".prop_map(Selector::Prefix),
        Just(Selector::All),
    ]
}

fn raise() -> impl Strategy<Value = Raise> {
    (selector(), 1u64..20, any::<bool>(), 0u64..5).prop_map(|(selector, seq, soft, at)| Raise {
        selector,
        seq,
        soft,
        at,
    })
}

fn apply(raises: &[Raise]) -> Watermarks {
    let mut map = Watermarks::new();
    for r in raises {
        map.raise(r.selector.clone(), r.seq, r.soft, t(r.at));
    }
    map
}

fn covers(selector: &Selector, tags: &[String], path: &str) -> bool {
    match selector {
        Selector::Tag(tag) => tags.contains(tag),
        Selector::Prefix(prefix) => path.starts_with(prefix.as_str()),
        Selector::All => true,
    }
}

proptest! {
    /// Raising in any order, or in two halves merged, gives the same map.
    #[test]
    fn raise_order_does_not_matter(
        (raises, shuffled) in proptest::collection::vec(raise(), 0..24)
            .prop_flat_map(|raises| (Just(raises.clone()), Just(raises).prop_shuffle())),
        split in 0usize..24,
    ) {
        let expected = apply(&raises);
        prop_assert_eq!(&apply(&shuffled), &expected);
        let split = split.min(raises.len());
        let mut merged = apply(&raises[..split]);
        merged.merge(&apply(&raises[split..]));
        prop_assert_eq!(&merged, &expected);
    }

    /// Marks only go up, and the verdict matches a scan of every purge ever raised.
    #[test]
    fn verdict_matches_a_full_scan_and_marks_never_go_down(
        raises in proptest::collection::vec(raise(), 0..24),
        entry_tags in proptest::collection::vec("[abcd]", 0..3),
        path in "/[ab\u{e9}]{0,4}",
        seq in 0u64..21,
    ) {
        let mut map = Watermarks::new();
        for r in &raises {
            let before = map.mark(&r.selector);
            map.raise(r.selector.clone(), r.seq, r.soft, t(r.at));
            let after = map.mark(&r.selector).unwrap();
            if let Some(before) = before {
                prop_assert!(after.hard >= before.hard && after.soft >= before.soft);
            }
            prop_assert!(map.current_seq() >= r.seq);
        }
        let covering = raises.iter().filter(|r| covers(&r.selector, &entry_tags, &path));
        let hard = covering.clone().any(|r| !r.soft && r.seq > seq);
        let soft = covering.clone().any(|r| r.soft && r.seq > seq);
        let expected = if hard { Verdict::Invalid } else if soft { Verdict::Stale } else { Verdict::Valid };
        prop_assert_eq!(map.verdict(entry(&entry_tags, &path, seq)), expected);
    }
}

/// A purge seen again (its own pub/sub echo) does not make its mark younger, so it is
/// forgotten on time; a higher sequence still raises it.
#[test]
fn a_purge_seen_again_keeps_the_time_it_was_applied_at() {
    let mut map = Watermarks::new();
    let selector = Selector::tag("a");
    map.raise(selector.clone(), 7, false, t(1));
    map.raise_unless_held(selector.clone(), 7, false, t(50));
    assert_eq!(map.mark(&selector).unwrap().raised_at, t(1));
    map.raise_unless_held(selector.clone(), 8, false, t(50));
    assert_eq!(map.mark(&selector).unwrap().hard, 8);
    assert_eq!(map.mark(&selector).unwrap().raised_at, t(50));
}
