//! Quarantine reason codes and the stage that applies each.

use std::fmt;

/// Why a record was quarantined: the first rule of SPEC section 4 it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    ParseError,
    MissingEventId,
    BadTimestamp,
    BadSchemaVersion,
    BadValue,
    BadCost,
    NoMeasure,
    MissingKey,
    BadDomain,
    UnknownOrg,
    UnknownResource,
    BadDates,
    Duplicate,
}

/// Where in the pipeline a rule sits: parse (bytes to JSON), conform (typing),
/// validate (domains and consistency), enrich (master-data lookups), dedup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Parse,
    Conform,
    Validate,
    Enrich,
    Dedup,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::ParseError,
        Reason::MissingEventId,
        Reason::BadTimestamp,
        Reason::BadSchemaVersion,
        Reason::BadValue,
        Reason::BadCost,
        Reason::NoMeasure,
        Reason::MissingKey,
        Reason::BadDomain,
        Reason::UnknownOrg,
        Reason::UnknownResource,
        Reason::BadDates,
        Reason::Duplicate,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::ParseError => "parse_error",
            Reason::MissingEventId => "missing_event_id",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::BadSchemaVersion => "bad_schema_version",
            Reason::BadValue => "bad_value",
            Reason::BadCost => "bad_cost",
            Reason::NoMeasure => "no_measure",
            Reason::MissingKey => "missing_key",
            Reason::BadDomain => "bad_domain",
            Reason::UnknownOrg => "unknown_org",
            Reason::UnknownResource => "unknown_resource",
            Reason::BadDates => "bad_dates",
            Reason::Duplicate => "duplicate",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn stage(self) -> Stage {
        match self {
            Reason::ParseError => Stage::Parse,
            Reason::MissingEventId
            | Reason::BadTimestamp
            | Reason::BadSchemaVersion
            | Reason::BadValue
            | Reason::BadCost
            | Reason::MissingKey => Stage::Conform,
            Reason::NoMeasure | Reason::BadDomain | Reason::BadDates => Stage::Validate,
            Reason::UnknownOrg | Reason::UnknownResource => Stage::Enrich,
            Reason::Duplicate => Stage::Dedup,
        }
    }

    /// Whether a record quarantined for this reason still belongs in bronze: bronze
    /// keeps every record that could be typed (it passed `parse_error` .. `bad_cost`,
    /// or `parse_error` and `missing_key` for CSV rows) except duplicates.
    pub fn in_bronze(self) -> bool {
        matches!(self.stage(), Stage::Validate | Stage::Enrich)
    }
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Conform => "conform",
            Stage::Validate => "validate",
            Stage::Enrich => "enrich",
            Stage::Dedup => "dedup",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bronze_keeps_typed_records_but_not_duplicates() {
        let kept: Vec<&str> = Reason::ALL
            .into_iter()
            .filter(|r| r.in_bronze())
            .map(Reason::code)
            .collect();
        assert_eq!(
            kept,
            [
                "no_measure",
                "bad_domain",
                "unknown_org",
                "unknown_resource",
                "bad_dates"
            ]
        );
    }

    #[test]
    fn codes_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code("nope"), None);
    }
}
