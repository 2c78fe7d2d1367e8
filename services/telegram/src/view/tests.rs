use super::*;

#[test]
fn a_message_that_fits_is_untouched_and_one_that_does_not_is_cut_with_a_note() {
    let exact = "a".repeat(MAX_MESSAGE);
    assert_eq!(fit(exact.clone(), "hint"), exact);
    let over = "a".repeat(MAX_MESSAGE + 1);
    let cut = fit(over, "skynet job 1 --output");
    assert!(utf16_len(&cut) <= MAX_MESSAGE, "{}", utf16_len(&cut));
    assert!(cut.ends_with("… (cut; full: skynet job 1 --output)"), "{}", &cut[cut.len() - 60..]);
}

#[test]
fn the_limit_counts_utf16_units_so_emoji_never_push_a_message_over() {
    // Each 🦀 is two UTF-16 units: 2,100 of them are 4,200 units but 2,100 chars.
    let crabs = "🦀".repeat(2_100);
    assert_eq!(crabs.chars().count(), 2_100);
    let cut = fit(crabs, "");
    assert!(utf16_len(&cut) <= MAX_MESSAGE);
    assert!(cut.ends_with("(cut to fit a message)"));
    // Never half a character.
    assert!(cut.chars().filter(|c| *c == '🦀').count() > 2_000);
}

#[test]
fn an_excerpt_is_the_end_of_the_first_output_that_says_something() {
    assert_eq!(excerpt([Some("  "), Some("err\n")]), Some("err".into()));
    assert_eq!(excerpt([None, None]), None);
    let long = format!("{}END", "x".repeat(1_000));
    let e = excerpt([Some(long.as_str())]).expect("some");
    assert!(e.starts_with('…') && e.ends_with("END") && e.chars().count() == EXCERPT_CHARS + 1);
}

#[test]
fn text_from_outside_cannot_become_a_tappable_command() {
    let d = defang("please /emergency_stop now (/resume) and read /tmp/x, a/b stays");
    assert!(!d.contains("/emergency_stop") && !d.contains("/resume") && !d.contains(" /tmp"), "{d}");
    assert!(d.contains("a/b stays"), "a slash inside a word is left alone: {d}");
    assert_eq!(d.replace('\u{2060}', ""), "please /emergency_stop now (/resume) and read /tmp/x, a/b stays");
    assert_eq!(defang("/start"), "/\u{2060}start");
    assert_eq!(defang("1 / 2"), "1 / 2");
}
