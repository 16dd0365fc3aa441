//! The documented categorical values of SPEC section 4.

use std::borrow::Cow;

pub const SERVICES: [&str; 6] = [
    "compute",
    "storage",
    "database",
    "networking",
    "analytics",
    "genai",
];
pub const METRICS: [&str; 3] = ["requests", "cpu_hours", "storage_gb_hours"];
pub const REGIONS: [&str; 7] = [
    "sa-east",
    "us-east",
    "us-west",
    "eu-central",
    "eu-west",
    "ap-south",
    "ap-northeast",
];
pub const INDUSTRIES: [&str; 10] = [
    "Education",
    "Media",
    "Manufacturing",
    "E-commerce",
    "Retail",
    "Healthcare",
    "Energy",
    "Fintech",
    "Gaming",
    "Government",
];
pub const PLAN_TIERS: [&str; 4] = ["free", "standard", "pro", "enterprise"];
pub const LIFECYCLE_STAGES: [&str; 5] = ["lead", "prospect", "active", "at_risk", "churned"];
pub const MARKETING_SOURCES: [&str; 5] = ["partner", "event", "organic", "ads", "referral"];
pub const ROLES: [&str; 6] = [
    "admin",
    "developer",
    "devops",
    "data_engineer",
    "ml_engineer",
    "analyst",
];
pub const RESOURCE_STATES: [&str; 3] = ["running", "stopped", "terminated"];
pub const TICKET_CATEGORIES: [&str; 6] = [
    "performance",
    "security",
    "availability",
    "usability",
    "integration",
    "billing",
];
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
pub const CURRENCIES: [&str; 3] = ["USD", "ARS", "EUR"];
pub const CAMPAIGNS: [&str; 6] = [
    "welcome",
    "genai_launch",
    "security_week",
    "webinar_finops",
    "upgrade_pro",
    "upgrade_enterprise",
];
pub const CHANNELS: [&str; 4] = ["email", "ads", "event", "in_app"];

/// The unit each of [`METRICS`] is measured in, in the same order: the one table of
/// the metric-unit pairs.
pub const UNITS: [&str; 3] = ["count", "hours", "gb_hours"];

/// The unit a metric is measured in.
pub fn unit_of_metric(metric: &str) -> Option<&'static str> {
    METRICS.iter().position(|m| *m == metric).map(|i| UNITS[i])
}

/// Whether `value` is one of `allowed`. A value typed by [`categorical`] is the
/// domain's own text, found by its address before any text is compared.
pub fn is_one_of(value: &str, allowed: &[&str]) -> bool {
    allowed.iter().any(|a| std::ptr::eq(*a, value)) || allowed.contains(&value)
}

/// A categorical value: the domain's own `'static` text when `value` is one of
/// `allowed` (no copy per record: nearly every value is), else a copy of it.
pub fn categorical(value: &str, allowed: &[&'static str]) -> Cow<'static, str> {
    match member(value.as_bytes(), allowed) {
        Some(member) => Cow::Borrowed(member),
        None => Cow::Owned(value.to_owned()),
    }
}

/// [`categorical`] of text given as bytes: a member is found by its bytes, so only
/// a value outside the domain is checked for UTF-8 (`None` when it is not).
pub fn categorical_bytes(value: &[u8], allowed: &[&'static str]) -> Option<Cow<'static, str>> {
    match member(value, allowed) {
        Some(member) => Some(Cow::Borrowed(member)),
        None => std::str::from_utf8(value)
            .ok()
            .map(|s| Cow::Owned(s.to_owned())),
    }
}

fn member(value: &[u8], allowed: &[&'static str]) -> Option<&'static str> {
    allowed.iter().copied().find(|a| a.as_bytes() == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_has_the_unit_of_spec_section_4() {
        // requests→count, cpu_hours→hours, storage_gb_hours→gb_hours.
        assert_eq!(unit_of_metric("requests"), Some("count"));
        assert_eq!(unit_of_metric("cpu_hours"), Some("hours"));
        assert_eq!(unit_of_metric("storage_gb_hours"), Some("gb_hours"));
        assert_eq!(unit_of_metric("count"), None);
        assert_eq!(unit_of_metric(""), None);
    }

    #[test]
    fn membership_is_by_text_whatever_the_address() {
        let borrowed = categorical("eu-west", &REGIONS);
        assert!(is_one_of(&borrowed, &REGIONS));
        let copy = String::from("eu-west");
        assert!(is_one_of(&copy, &REGIONS));
        assert!(!is_one_of("eu-west", &SERVICES));
        // A prefix of a member shares its address, not its text.
        assert!(!is_one_of(&REGIONS[4][..2], &REGIONS));
        assert!(!is_one_of("mars-1", &REGIONS));
        assert!(!is_one_of("", &REGIONS));
    }

    #[test]
    fn categorical_bytes_borrow_members_and_check_the_rest() {
        let member = categorical_bytes(b"eu-central", &REGIONS);
        match member {
            Some(Cow::Borrowed(s)) => assert!(REGIONS.iter().any(|r| std::ptr::eq(*r, s))),
            other => panic!("a member should be the domain's own text: {other:?}"),
        }
        assert_eq!(
            categorical_bytes("mars-1é".as_bytes(), &REGIONS),
            Some(Cow::Owned("mars-1é".to_owned()))
        );
        assert_eq!(categorical_bytes(b"\xff\xfe", &REGIONS), None);
        // The text path agrees with the bytes path.
        assert_eq!(categorical("eu-central", &REGIONS), "eu-central");
        assert!(matches!(categorical("mars-1", &REGIONS), Cow::Owned(_)));
    }
}
