use super::record::{FORCE_PER_DAY, ForceBudget, TokenRecord};

const HOUR: i64 = 3_600_000;

#[test]
fn the_forced_refresh_budget_allows_twenty_a_wechat_day_thirty_seconds_apart() {
    // 2026-12-03 00:00 Beijing time is 2026-12-02 16:00 UTC.
    let midnight_beijing = 1_796_227_200_000;
    let mut b = ForceBudget::default();
    let mut t = midnight_beijing + 1_000;
    for _ in 0..FORCE_PER_DAY {
        assert!(b.allows(t));
        b.spend(t);
        assert!(!b.allows(t + 29_999), "30 s apart");
        t += 30_000;
    }
    assert!(!b.allows(t), "the 21st of the day is refused");
    assert_eq!(b.used(t), FORCE_PER_DAY);
    let next_day = midnight_beijing + 24 * HOUR;
    assert_eq!(b.used(next_day), 0);
    assert!(
        b.allows(next_day),
        "a new WeChat day starts at midnight in Beijing"
    );
    assert!(!b.allows(next_day - 1), "not at 23:59:59.999 Beijing time");
}

#[test]
fn a_token_is_due_ahead_of_expiry_but_never_for_more_than_half_its_life() {
    let rec = TokenRecord {
        token_sealed: Some("sealed".into()),
        expires_at_ms: 7_200_000,
        lifetime_ms: 7_200_000,
        ..Default::default()
    };
    assert!(!rec.due(7_200_000 - 240_001, 240_000));
    assert!(rec.due(7_200_000 - 240_000, 240_000));
    assert!(rec.usable(7_199_999));
    assert!(!rec.usable(7_200_000));
    let short = TokenRecord {
        expires_at_ms: 20_000,
        lifetime_ms: 20_000,
        ..rec.clone()
    };
    assert!(
        !short.due(9_999, 240_000),
        "a 20 s token is not due in its first half"
    );
    assert!(short.due(10_000, 240_000));
    let none = TokenRecord::default();
    assert!(!none.usable(0));
}
