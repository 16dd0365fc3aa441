//! The eight sources: names, raw topics, landing file names, CSV columns, natural keys.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    UsageEvents,
    CustomersOrgs,
    Users,
    Resources,
    BillingMonthly,
    SupportTickets,
    MarketingTouches,
    NpsSurveys,
}

impl Source {
    pub const ALL: [Source; 8] = [
        Source::UsageEvents,
        Source::CustomersOrgs,
        Source::Users,
        Source::Resources,
        Source::BillingMonthly,
        Source::SupportTickets,
        Source::MarketingTouches,
        Source::NpsSurveys,
    ];

    /// The CSV sources, in the order master data must be loaded: orgs first, since
    /// every other source's `unknown_org` rule looks them up.
    pub const MASTER: [Source; 7] = [
        Source::CustomersOrgs,
        Source::Users,
        Source::Resources,
        Source::BillingMonthly,
        Source::SupportTickets,
        Source::MarketingTouches,
        Source::NpsSurveys,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::UsageEvents => "usage_events",
            Source::CustomersOrgs => "customers_orgs",
            Source::Users => "users",
            Source::Resources => "resources",
            Source::BillingMonthly => "billing_monthly",
            Source::SupportTickets => "support_tickets",
            Source::MarketingTouches => "marketing_touches",
            Source::NpsSurveys => "nps_surveys",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.name() == name)
    }

    /// `raw.<name>`: the source's raw topic.
    pub fn raw_topic(self) -> &'static str {
        match self {
            Source::UsageEvents => "raw.usage_events",
            Source::CustomersOrgs => "raw.customers_orgs",
            Source::Users => "raw.users",
            Source::Resources => "raw.resources",
            Source::BillingMonthly => "raw.billing_monthly",
            Source::SupportTickets => "raw.support_tickets",
            Source::MarketingTouches => "raw.marketing_touches",
            Source::NpsSurveys => "raw.nps_surveys",
        }
    }

    /// Every source's raw topic: the log's source of truth.
    pub fn raw_topics() -> [&'static str; 8] {
        Source::ALL.map(Source::raw_topic)
    }

    /// The CSV source a landing file feeds, by its file name (`users.csv`).
    pub fn from_csv_file_name(file_name: &str) -> Option<Source> {
        let stem = file_name.strip_suffix(".csv")?;
        Source::from_name(stem).filter(|s| *s != Source::UsageEvents)
    }

    /// The header of a CSV source, in file order. Empty for usage events.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Source::UsageEvents => &[],
            Source::CustomersOrgs => &[
                "org_id",
                "org_name",
                "industry",
                "hq_region",
                "plan_tier",
                "is_enterprise",
                "signup_date",
                "sales_rep",
                "lifecycle_stage",
                "marketing_source",
                "nps_score",
            ],
            Source::Users => &[
                "user_id",
                "org_id",
                "email",
                "role",
                "active",
                "created_at",
                "last_login",
            ],
            Source::Resources => &[
                "resource_id",
                "org_id",
                "service",
                "region",
                "created_at",
                "state",
                "tags_json",
            ],
            Source::BillingMonthly => &[
                "invoice_id",
                "org_id",
                "month",
                "subtotal",
                "credits",
                "taxes",
                "currency",
                "exchange_rate_to_usd",
            ],
            Source::SupportTickets => &[
                "ticket_id",
                "org_id",
                "category",
                "severity",
                "created_at",
                "resolved_at",
                "csat",
                "sla_breached",
            ],
            Source::MarketingTouches => &[
                "touch_id",
                "org_id",
                "campaign",
                "channel",
                "timestamp",
                "clicked",
                "converted",
            ],
            Source::NpsSurveys => &["org_id", "survey_date", "nps_score", "comment"],
        }
    }

    /// The columns of the natural key (SPEC section 5).
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            Source::UsageEvents => &["event_id"],
            Source::CustomersOrgs => &["org_id"],
            Source::Users => &["user_id"],
            Source::Resources => &["resource_id"],
            Source::BillingMonthly => &["invoice_id"],
            Source::SupportTickets => &["ticket_id"],
            Source::MarketingTouches => &["touch_id"],
            Source::NpsSurveys => &["org_id", "survey_date"],
        }
    }

    /// Columns that may be empty (null); every other column is required.
    pub fn nullable_columns(self) -> &'static [&'static str] {
        match self {
            Source::CustomersOrgs => &["nps_score"],
            Source::Users => &["last_login"],
            Source::Resources => &["tags_json"],
            Source::BillingMonthly => &["credits"],
            Source::SupportTickets => &["resolved_at", "csat"],
            Source::NpsSurveys => &["nps_score", "comment"],
            Source::UsageEvents | Source::MarketingTouches => &[],
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_raw_topic_is_raw_dot_its_name() {
        for s in Source::ALL {
            assert_eq!(s.raw_topic(), format!("raw.{}", s.name()));
        }
    }
}
