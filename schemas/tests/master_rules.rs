//! One test per master-data reason code and flag of SPEC section 4, named after it,
//! on CSV rows carried the way the producer carries them.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use schemas::master::apply_master_rules;
use schemas::{MasterFlags, MasterRecord, MasterTables, Outcome, Reason, Source, csv_row_value};

/// The raw topic value of one CSV row with the source's real header.
fn row(source: Source, fields: &[&str]) -> Vec<u8> {
    let header: Vec<String> = source.columns().iter().map(|s| s.to_string()).collect();
    let raw: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    csv_row_value(source, &header, &raw).1
}

const ORG: &[&str] = &[
    "org_a",
    "Acme, Inc.",
    "Gaming",
    "eu-west",
    "pro",
    "True",
    "2025-05-26",
    "rep_a",
    "active",
    "ads",
    "-3.0",
];

fn master() -> MasterTables {
    let mut m = MasterTables::default();
    match apply_master_rules(
        Source::CustomersOrgs,
        &row(Source::CustomersOrgs, ORG),
        &m,
        &mut HashSet::new(),
    ) {
        Outcome::Kept { record, .. } => m.absorb(&record),
        other => panic!("{other:?}"),
    }
    m
}

fn run(source: Source, fields: &[&str]) -> Outcome<MasterRecord, MasterFlags> {
    apply_master_rules(source, &row(source, fields), &master(), &mut HashSet::new())
}

fn reason(source: Source, fields: &[&str]) -> Option<Reason> {
    run(source, fields).reason()
}

fn flags(source: Source, fields: &[&str]) -> MasterFlags {
    match run(source, fields) {
        Outcome::Kept { flags, .. } => flags,
        other => panic!("expected kept, got {other:?}"),
    }
}

const TICKET: &[&str] = &[
    "tkt_1",
    "org_a",
    "billing",
    "critical",
    "2025-07-02",
    "2025-07-08",
    "4.0",
    "False",
];
const INVOICE: &[&str] = &[
    "inv_1",
    "org_a",
    "2025-06-01",
    "1133.34",
    "10.5",
    "238.0",
    "EUR",
    "1.08",
];
const NPS: &[&str] = &["org_a", "2025-08-22", "11.0", "Complex billing"];

fn with(base: &[&str], i: usize, v: &'static str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = base
        .iter()
        .map(|s| -> &'static str { Box::leak(s.to_string().into_boxed_str()) })
        .collect();
    out[i] = v;
    out
}

#[test]
fn every_source_accepts_a_valid_row() {
    let rows: Vec<(Source, Vec<&str>)> = vec![
        (Source::CustomersOrgs, ORG.to_vec()),
        (
            Source::Users,
            vec![
                "user_1",
                "org_a",
                "u@example.com",
                "devops",
                "True",
                "2025-07-10",
                "",
            ],
        ),
        (
            Source::Resources,
            vec![
                "res_1",
                "org_a",
                "compute",
                "sa-east",
                "2025-08-14",
                "running",
                "[\"env:prod\", \"team:data\"]",
            ],
        ),
        (Source::BillingMonthly, INVOICE.to_vec()),
        (Source::SupportTickets, TICKET.to_vec()),
        (
            Source::MarketingTouches,
            vec![
                "mkt_1",
                "org_a",
                "security_week",
                "ads",
                "2025-08-26",
                "False",
                "True",
            ],
        ),
        (Source::NpsSurveys, NPS.to_vec()),
    ];
    for (s, r) in rows {
        assert!(
            matches!(run(s, &r), Outcome::Kept { .. }),
            "{s}: {:?}",
            run(s, &r)
        );
    }
}

#[test]
fn quoted_fields_with_commas_and_non_ascii_text_round_trip() {
    let fields = with(ORG, 1, "Café \"Zürich\", Ltd — 東京");
    match run(Source::CustomersOrgs, &fields) {
        Outcome::Kept {
            record: MasterRecord::Org(o),
            ..
        } => assert_eq!(&*o.org_name, "Café \"Zürich\", Ltd — 東京"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_kept_orgs_categorical_columns_are_the_domains_own_text() {
    // Kept rows' categorical values are members of their domain, held as the
    // domain's `'static` strings rather than a copy per row.
    match run(Source::CustomersOrgs, ORG) {
        Outcome::Kept {
            record: MasterRecord::Org(o),
            ..
        } => {
            for v in [&o.industry, &o.hq_region, &o.plan_tier] {
                assert!(matches!(v, std::borrow::Cow::Borrowed(_)), "{v:?}");
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parse_error() {
    // Wrong column count, both ways.
    assert_eq!(
        reason(Source::CustomersOrgs, &ORG[..10]),
        Some(Reason::ParseError)
    );
    let mut long = ORG.to_vec();
    long.push("extra");
    assert_eq!(
        reason(Source::CustomersOrgs, &long),
        Some(Reason::ParseError)
    );
    // A date, number or boolean that does not parse.
    assert_eq!(
        reason(Source::CustomersOrgs, &with(ORG, 6, "2025-02-30")),
        Some(Reason::ParseError)
    );
    assert_eq!(
        reason(Source::CustomersOrgs, &with(ORG, 5, "maybe")),
        Some(Reason::ParseError)
    );
    assert_eq!(
        reason(Source::CustomersOrgs, &with(ORG, 10, "NaN")),
        Some(Reason::ParseError)
    );
    assert_eq!(
        reason(Source::BillingMonthly, &with(INVOICE, 3, "12,50")),
        Some(Reason::ParseError)
    );
    // Empty where the data dictionary does not allow it.
    assert_eq!(
        reason(Source::BillingMonthly, &with(INVOICE, 5, "")),
        Some(Reason::ParseError)
    );
    assert_eq!(
        reason(
            Source::Users,
            &[
                "user_1",
                "",
                "u@example.com",
                "devops",
                "True",
                "2025-07-10",
                ""
            ]
        ),
        Some(Reason::ParseError)
    );
    // Not JSON at all, or invalid UTF-8 in a field.
    let m = master();
    assert_eq!(
        apply_master_rules(Source::Users, b"nope", &m, &mut HashSet::new()).reason(),
        Some(Reason::ParseError)
    );
    let header: Vec<String> = Source::NpsSurveys
        .columns()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (_, v) = csv_row_value(
        Source::NpsSurveys,
        &header,
        &[b"org_a", b"2025-08-22", b"1", b"caf\xe9"],
    );
    assert_eq!(
        apply_master_rules(Source::NpsSurveys, &v, &m, &mut HashSet::new()).reason(),
        Some(Reason::ParseError)
    );
}

#[test]
fn integers_may_arrive_as_floats_and_nullable_fields_may_be_empty() {
    assert!(matches!(
        run(Source::CustomersOrgs, &with(ORG, 10, "")),
        Outcome::Kept { .. }
    ));
    assert!(matches!(
        run(Source::NpsSurveys, &["org_a", "2025-08-22", "", ""]),
        Outcome::Kept { .. }
    ));
}

#[test]
fn missing_key() {
    assert_eq!(
        reason(Source::CustomersOrgs, &with(ORG, 0, "")),
        Some(Reason::MissingKey)
    );
    assert_eq!(
        reason(Source::SupportTickets, &with(TICKET, 0, "")),
        Some(Reason::MissingKey)
    );
    assert_eq!(
        reason(Source::NpsSurveys, &with(NPS, 1, "")),
        Some(Reason::MissingKey)
    );
    // parse_error comes first.
    let mut both = with(TICKET, 0, "");
    both[7] = "perhaps";
    assert_eq!(
        reason(Source::SupportTickets, &both),
        Some(Reason::ParseError)
    );
}

#[test]
fn bad_domain() {
    assert_eq!(
        reason(Source::CustomersOrgs, &with(ORG, 2, "Mining")),
        Some(Reason::BadDomain)
    );
    assert_eq!(
        reason(Source::SupportTickets, &with(TICKET, 3, "urgent")),
        Some(Reason::BadDomain)
    );
    assert_eq!(
        reason(Source::BillingMonthly, &with(INVOICE, 6, "GBP")),
        Some(Reason::BadDomain)
    );
}

#[test]
fn unknown_org() {
    assert_eq!(
        reason(Source::SupportTickets, &with(TICKET, 1, "org_zzz")),
        Some(Reason::UnknownOrg)
    );
    assert_eq!(
        reason(Source::NpsSurveys, &with(NPS, 0, "org_zzz")),
        Some(Reason::UnknownOrg)
    );
}

#[test]
fn bad_dates() {
    assert_eq!(
        reason(Source::SupportTickets, &with(TICKET, 5, "2025-07-01")),
        Some(Reason::BadDates)
    );
    assert!(matches!(
        run(Source::SupportTickets, &with(TICKET, 5, "2025-07-02")),
        Outcome::Kept { .. }
    ));
}

#[test]
fn duplicate() {
    let m = master();
    let mut seen = HashSet::new();
    let a = row(Source::SupportTickets, TICKET);
    let b = row(Source::SupportTickets, &with(TICKET, 3, "low"));
    assert!(matches!(
        apply_master_rules(Source::SupportTickets, &a, &m, &mut seen),
        Outcome::Kept { .. }
    ));
    assert_eq!(
        apply_master_rules(Source::SupportTickets, &b, &m, &mut seen).reason(),
        Some(Reason::Duplicate)
    );
    // NPS's key is (org_id, survey_date).
    let mut seen = HashSet::new();
    let n1 = row(Source::NpsSurveys, NPS);
    let n2 = row(Source::NpsSurveys, &with(NPS, 1, "2025-08-23"));
    assert!(matches!(
        apply_master_rules(Source::NpsSurveys, &n1, &m, &mut seen),
        Outcome::Kept { .. }
    ));
    assert!(matches!(
        apply_master_rules(Source::NpsSurveys, &n2, &m, &mut seen),
        Outcome::Kept { .. }
    ));
    assert_eq!(
        apply_master_rules(Source::NpsSurveys, &n1, &m, &mut seen).reason(),
        Some(Reason::Duplicate)
    );
}

#[test]
fn nps_out_of_range() {
    assert!(flags(Source::CustomersOrgs, &with(ORG, 10, "140.0")).nps_out_of_range);
    assert!(flags(Source::NpsSurveys, &with(NPS, 2, "-101")).nps_out_of_range);
    assert!(!flags(Source::NpsSurveys, &with(NPS, 2, "-100")).nps_out_of_range);
    assert!(!flags(Source::NpsSurveys, &with(NPS, 2, "")).nps_out_of_range);
}

#[test]
fn sign_mismatch() {
    assert!(flags(Source::BillingMonthly, &with(INVOICE, 5, "-10.0")).sign_mismatch);
    assert!(!flags(Source::BillingMonthly, INVOICE).sign_mismatch);
}

#[test]
fn credits_imputed() {
    match run(Source::BillingMonthly, &with(INVOICE, 4, "")) {
        Outcome::Kept {
            record: MasterRecord::Invoice(i),
            flags,
        } => {
            assert!(flags.credits_imputed);
            assert_eq!(i.credits, Some(0.0));
        }
        other => panic!("{other:?}"),
    }
    assert!(!flags(Source::BillingMonthly, INVOICE).credits_imputed);
}

#[test]
fn fx_overridden() {
    let usd = with(INVOICE, 6, "USD");
    assert!(flags(Source::BillingMonthly, &usd).fx_overridden);
    let mut usd1 = usd.clone();
    usd1[7] = "1.0";
    assert!(!flags(Source::BillingMonthly, &usd1).fx_overridden);
    assert!(
        !flags(Source::BillingMonthly, INVOICE).fx_overridden,
        "EUR keeps its rate"
    );
}

#[test]
fn csat_out_of_range() {
    assert!(flags(Source::SupportTickets, &with(TICKET, 6, "6.0")).csat_out_of_range);
    assert!(flags(Source::SupportTickets, &with(TICKET, 6, "0.0")).csat_out_of_range);
    assert!(!flags(Source::SupportTickets, TICKET).csat_out_of_range);
}

#[test]
fn open_with_csat() {
    assert!(flags(Source::SupportTickets, &with(TICKET, 5, "")).open_with_csat);
    let mut open_no_csat = with(TICKET, 5, "");
    open_no_csat[6] = "";
    assert!(!flags(Source::SupportTickets, &open_no_csat).open_with_csat);
}

#[test]
fn natural_key_is_the_topic_key() {
    let header: Vec<String> = Source::NpsSurveys
        .columns()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let raw: Vec<&[u8]> = NPS.iter().map(|f| f.as_bytes()).collect();
    assert_eq!(
        csv_row_value(Source::NpsSurveys, &header, &raw).0,
        "org_a|2025-08-22"
    );
}
