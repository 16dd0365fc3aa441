//! One test per usage-event reason code and flag of SPEC section 4, named after it.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use chrono::NaiveDate;
use schemas::event::apply_event_rules;
use schemas::{EventFlags, MasterTables, Org, Outcome, Reason, Resource, SilverEvent};

fn master() -> MasterTables {
    let mut m = MasterTables::default();
    m.orgs.insert(
        "org_a".into(),
        Org {
            org_id: "org_a".into(),
            org_name: "Acme".into(),
            industry: "Gaming".into(),
            hq_region: "eu-west".into(),
            plan_tier: "pro".into(),
            is_enterprise: false,
            signup_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            sales_rep: "rep_a".into(),
            lifecycle_stage: "active".into(),
            marketing_source: "ads".into(),
            nps_score: None,
        },
    );
    m.orgs.insert(
        "org_b".into(),
        Org {
            org_id: "org_b".into(),
            ..m.orgs["org_a"].clone()
        },
    );
    for (id, org, service) in [
        ("res_1", "org_a", "compute"),
        ("res_g", "org_a", "genai"),
        ("res_b", "org_b", "compute"),
    ] {
        m.resources.insert(
            id.into(),
            Resource {
                resource_id: id.into(),
                org_id: org.into(),
                service: service.into(),
                region: "eu-west".into(),
                created_at: NaiveDate::from_ymd_opt(2025, 7, 10).unwrap(),
                state: "running".into(),
                tags_json: None,
            },
        );
    }
    m
}

/// A valid v2 event; `patch` edits its JSON object before it is serialized.
fn line(patch: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let mut v = serde_json::json!({
        "event_id": "evt_1", "timestamp": "2025-08-01T12:00:00Z", "org_id": "org_a",
        "resource_id": "res_1", "service": "compute", "region": "eu-west",
        "metric": "cpu_hours", "value": 2.5, "unit": "hours",
        "cost_usd_increment": 1.25, "schema_version": 2, "carbon_kg": 0.01
    });
    patch(v.as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

fn run(bytes: &[u8]) -> Outcome<SilverEvent, EventFlags> {
    apply_event_rules(bytes, &master(), &mut HashSet::new())
}

fn reason(bytes: &[u8]) -> Option<Reason> {
    run(bytes).reason()
}

fn kept(bytes: &[u8]) -> (SilverEvent, EventFlags) {
    match run(bytes) {
        Outcome::Kept { record, flags } => (record, flags),
        other => panic!("expected kept, got {other:?}"),
    }
}

#[test]
fn valid_event_is_kept_and_enriched() {
    let (e, flags) = kept(&line(|_| {}));
    assert_eq!(flags, EventFlags::default());
    assert_eq!(&*e.org_name, "Acme");
    assert_eq!(&*e.industry, "Gaming");
    assert_eq!(&*e.plan_tier, "pro");
    assert_eq!(&*e.hq_region, "eu-west");
    assert_eq!(&*e.resource_state, "running");
    assert_eq!(e.carbon_kg, Some(0.01));
    assert_eq!(e.value, Some(2.5));
}

#[test]
fn parse_error() {
    assert_eq!(reason(b"{not json"), Some(Reason::ParseError));
    assert_eq!(
        reason(b"[1,2,3]"),
        Some(Reason::ParseError),
        "a non-object JSON line"
    );
    assert_eq!(reason(b"\"evt\""), Some(Reason::ParseError));
    assert_eq!(reason(b""), Some(Reason::ParseError));
    let mut bad_utf8 = line(|_| {});
    let at = bad_utf8.len() - 3;
    bad_utf8[at] = 0xff;
    assert_eq!(reason(&bad_utf8), Some(Reason::ParseError), "invalid UTF-8");
}

#[test]
fn crlf_line_ends_are_valid() {
    let mut l = line(|_| {});
    l.extend_from_slice(b"\r\n");
    kept(&l);
}

#[test]
fn missing_event_id() {
    assert_eq!(
        reason(&line(|o| {
            o.remove("event_id");
        })),
        Some(Reason::MissingEventId)
    );
    assert_eq!(
        reason(&line(|o| {
            o.insert("event_id".into(), "".into());
        })),
        Some(Reason::MissingEventId)
    );
    assert_eq!(
        reason(&line(|o| {
            o.insert("event_id".into(), 12.into());
        })),
        Some(Reason::MissingEventId)
    );
}

#[test]
fn bad_timestamp() {
    for ts in [
        "2025-08-01T12:00:00",
        "2025-08-01",
        "yesterday",
        "2025-02-30T00:00:00Z",
    ] {
        assert_eq!(
            reason(&line(|o| {
                o.insert("timestamp".into(), ts.into());
            })),
            Some(Reason::BadTimestamp),
            "{ts}"
        );
    }
    assert_eq!(
        reason(&line(|o| {
            o.remove("timestamp");
        })),
        Some(Reason::BadTimestamp)
    );
}

#[test]
fn offset_moves_the_utc_date() {
    let (e, _) = kept(&line(|o| {
        o.insert("timestamp".into(), "2025-08-01T01:30:00+02:00".into());
    }));
    assert_eq!(
        schemas::time::days_to_date(e.usage_date)
            .unwrap()
            .to_string(),
        "2025-07-31"
    );
    assert_eq!(
        schemas::time::format_micros(e.ts_micros),
        "2025-07-31T23:30:00Z"
    );
}

#[test]
fn fractional_seconds_are_valid() {
    let (e, _) = kept(&line(|o| {
        o.insert("timestamp".into(), "2025-08-01T12:00:00.250Z".into());
    }));
    assert_eq!(e.ts_micros % 1_000_000, 250_000);
}

#[test]
fn bad_schema_version() {
    for v in [
        serde_json::json!(3),
        serde_json::json!("2"),
        serde_json::json!(null),
        serde_json::json!(1.5),
    ] {
        assert_eq!(
            reason(&line(|o| {
                o.insert("schema_version".into(), v.clone());
            })),
            Some(Reason::BadSchemaVersion),
            "{v}"
        );
    }
}

#[test]
fn bad_value() {
    for v in [
        serde_json::json!("NaN"),
        serde_json::json!(true),
        serde_json::json!("abc"),
        serde_json::json!("inf"),
        serde_json::json!([1]),
    ] {
        assert_eq!(
            reason(&line(|o| {
                o.insert("value".into(), v.clone());
            })),
            Some(Reason::BadValue),
            "{v}"
        );
    }
}

#[test]
fn numeric_string_value_is_converted() {
    let (e, _) = kept(&line(|o| {
        o.insert("value".into(), "1e2".into());
    }));
    assert_eq!(e.value, Some(100.0));
    let (e, _) = kept(&line(|o| {
        o.insert("value".into(), " 12.5".into());
    }));
    assert_eq!(e.value, Some(12.5));
}

#[test]
fn null_value_stays_null() {
    let (e, _) = kept(&line(|o| {
        o.insert("value".into(), serde_json::Value::Null);
    }));
    assert_eq!(e.value, None);
    assert_eq!(e.counted_value(), 0.0);
}

#[test]
fn bad_cost() {
    for v in [
        serde_json::json!(null),
        serde_json::json!("NaN"),
        serde_json::json!(false),
        serde_json::json!("1,5"),
    ] {
        assert_eq!(
            reason(&line(|o| {
                o.insert("cost_usd_increment".into(), v.clone());
            })),
            Some(Reason::BadCost),
            "{v}"
        );
    }
    assert_eq!(
        reason(&line(|o| {
            o.remove("cost_usd_increment");
        })),
        Some(Reason::BadCost)
    );
    let (e, _) = kept(&line(|o| {
        o.insert("cost_usd_increment".into(), "0.5".into());
    }));
    assert_eq!(e.cost_usd, 0.5);
}

#[test]
fn no_measure() {
    let l = line(|o| {
        o.insert("value".into(), serde_json::Value::Null);
        o.insert("unit".into(), serde_json::Value::Null);
    });
    assert_eq!(reason(&l), Some(Reason::NoMeasure));
    assert_eq!(
        reason(&line(|o| {
            o.remove("value");
            o.remove("unit");
        })),
        Some(Reason::NoMeasure)
    );
}

#[test]
fn bad_domain() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("service", "quantum".into()),
        ("metric", "gpu_hours".into()),
        ("unit", "count".into()),
        ("region", "mars-1".into()),
        ("service", 5.into()),
    ];
    for (field, v) in cases {
        assert_eq!(
            reason(&line(|o| {
                o.insert(field.into(), v.clone());
            })),
            Some(Reason::BadDomain),
            "{field}={v}"
        );
    }
    assert_eq!(
        reason(&line(|o| {
            o.remove("region");
        })),
        Some(Reason::BadDomain)
    );
}

#[test]
fn unknown_org() {
    assert_eq!(
        reason(&line(|o| {
            o.insert("org_id".into(), "org_zzz".into());
        })),
        Some(Reason::UnknownOrg)
    );
    assert_eq!(
        reason(&line(|o| {
            o.remove("org_id");
        })),
        Some(Reason::UnknownOrg)
    );
}

#[test]
fn unknown_resource() {
    assert_eq!(
        reason(&line(|o| {
            o.insert("resource_id".into(), "res_zzz".into());
        })),
        Some(Reason::UnknownResource)
    );
    // A resource of another org is unknown for this one.
    assert_eq!(
        reason(&line(|o| {
            o.insert("resource_id".into(), "res_b".into());
        })),
        Some(Reason::UnknownResource)
    );
}

#[test]
fn duplicate() {
    let m = master();
    let mut seen = HashSet::new();
    let first = line(|_| {});
    let again = line(|o| {
        o.insert("cost_usd_increment".into(), 9.0.into());
    });
    assert!(matches!(
        apply_event_rules(&first, &m, &mut seen),
        Outcome::Kept { .. }
    ));
    assert_eq!(
        apply_event_rules(&again, &m, &mut seen).reason(),
        Some(Reason::Duplicate)
    );
    // A quarantined event does not claim its id: a later valid copy is kept.
    let mut seen = HashSet::new();
    let bad = line(|o| {
        o.insert("event_id".into(), "evt_2".into());
        o.insert("region".into(), "x".into());
    });
    let good = line(|o| {
        o.insert("event_id".into(), "evt_2".into());
    });
    assert_eq!(
        apply_event_rules(&bad, &m, &mut seen).reason(),
        Some(Reason::BadDomain)
    );
    assert!(matches!(
        apply_event_rules(&good, &m, &mut seen),
        Outcome::Kept { .. }
    ));
}

#[test]
fn first_failing_rule_wins() {
    // Bad timestamp and bad value and unknown org: the timestamp rule comes first.
    let l = line(|o| {
        o.insert("timestamp".into(), "nope".into());
        o.insert("value".into(), "NaN".into());
        o.insert("org_id".into(), "org_zzz".into());
    });
    assert_eq!(reason(&l), Some(Reason::BadTimestamp));
}

#[test]
fn unit_imputed() {
    let (e, flags) = kept(&line(|o| {
        o.insert("unit".into(), serde_json::Value::Null);
    }));
    assert!(flags.unit_imputed);
    assert_eq!(e.unit, "hours");
    let (_, flags) = kept(&line(|o| {
        o.remove("unit");
    }));
    assert!(flags.unit_imputed);
    // Unit present, value null: kept, nothing imputed.
    let (_, flags) = kept(&line(|o| {
        o.insert("value".into(), serde_json::Value::Null);
    }));
    assert!(!flags.unit_imputed);
}

#[test]
fn cost_negative() {
    let (e, flags) = kept(&line(|o| {
        o.insert("cost_usd_increment".into(), (-0.5).into());
    }));
    assert!(flags.cost_negative);
    assert_eq!(e.counted_cost(&flags), 0.0);
    let (_, flags) = kept(&line(|o| {
        o.insert("cost_usd_increment".into(), (-0.01).into());
    }));
    assert!(
        !flags.cost_negative,
        "the threshold is strictly below -0.01"
    );
}

#[test]
fn cost_spike() {
    // Set by the batch path from the p99 of the service's costs; never by the rules.
    let (_, flags) = kept(&line(|o| {
        o.insert("cost_usd_increment".into(), 1e9.into());
    }));
    assert!(!flags.cost_spike);
    let costs: Vec<f64> = (1..=100).map(f64::from).collect();
    let p99 = schemas::stats::percentile_cont(&costs, 0.99).unwrap();
    assert!((p99 - 99.01).abs() < 1e-9);
    assert!(schemas::stats::is_cost_spike(
        150.0,
        p99,
        schemas::stats::SPIKE_FACTOR
    ));
    assert!(!schemas::stats::is_cost_spike(
        148.0,
        p99,
        schemas::stats::SPIKE_FACTOR
    ));
}

#[test]
fn tokens_misplaced() {
    let (e, flags) = kept(&line(|o| {
        o.insert("genai_tokens".into(), 500.into());
    }));
    assert!(flags.tokens_misplaced, "tokens on a compute event");
    assert_eq!(e.counted_tokens(&flags), 0);
    let v1 = line(|o| {
        o.insert("resource_id".into(), "res_g".into());
        o.insert("service".into(), "genai".into());
        o.insert("schema_version".into(), 1.into());
        o.insert("genai_tokens".into(), 500.into());
    });
    let (e, flags) = kept(&v1);
    assert!(flags.tokens_misplaced, "tokens on a v1 event");
    assert_eq!(e.genai_tokens, None, "v1 events carry no tokens in silver");
    assert_eq!(e.carbon_kg, None, "v1 events carry no carbon in silver");
    let ok = line(|o| {
        o.insert("resource_id".into(), "res_g".into());
        o.insert("service".into(), "genai".into());
        o.insert("genai_tokens".into(), 500.into());
    });
    let (e, flags) = kept(&ok);
    assert!(!flags.tokens_misplaced);
    assert_eq!(e.counted_tokens(&flags), 500);
}

#[test]
fn before_resource() {
    let (_, flags) = kept(&line(|o| {
        o.insert("timestamp".into(), "2025-07-09T23:59:59Z".into());
    }));
    assert!(flags.before_resource);
    let (_, flags) = kept(&line(|o| {
        o.insert("timestamp".into(), "2025-07-10T00:00:00Z".into());
    }));
    assert!(
        !flags.before_resource,
        "same day as created_at is not before it"
    );
    // The UTC date counts: 01:00+02:00 on the 10th is the 9th in UTC.
    let (_, flags) = kept(&line(|o| {
        o.insert("timestamp".into(), "2025-07-10T01:00:00+02:00".into());
    }));
    assert!(flags.before_resource);
}

#[test]
fn routing_reads_org_and_time_cheaply() {
    let l = line(|_| {});
    let r = schemas::event::event_routing(&l);
    assert_eq!(r.org_id.as_deref(), Some("org_a"));
    assert_eq!(
        r.ts_micros,
        schemas::time::parse_timestamp_micros("2025-08-01T12:00:00Z")
    );
    let r = schemas::event::event_routing(b"garbage");
    assert_eq!(r.org_id, None);
    let r = schemas::event::event_routing(br#"{"org_id": 5, "timestamp": "2025-08-01T12:00:00Z"}"#);
    assert_eq!(r.org_id, None);
}

#[test]
fn repeated_key_is_a_parse_error() {
    let l = br#"{"event_id":"a","event_id":"b","timestamp":"2025-08-01T12:00:00Z"}"#;
    assert_eq!(reason(l), Some(Reason::ParseError));
}

#[test]
fn bronze_of_a_kept_event_equals_the_parsed_line() {
    use schemas::BronzeEvent;
    let lines = [
        line(|_| {}),
        line(|o| {
            o.remove("unit");
        }),
        line(|o| {
            o.insert("value".into(), serde_json::json!("7"));
        }),
        line(|o| {
            o.insert("value".into(), serde_json::Value::Null);
        }),
        line(|o| {
            o.insert("service".into(), serde_json::json!("genai"));
            o.insert("resource_id".into(), serde_json::json!("res_g"));
            o.insert("metric".into(), serde_json::json!("requests"));
            o.insert("unit".into(), serde_json::json!("count"));
            o.insert("genai_tokens".into(), serde_json::json!(1200));
            o.insert("cost_usd_increment".into(), serde_json::json!(-3.0));
        }),
        line(|o| {
            o.insert(
                "timestamp".into(),
                serde_json::json!("2025-08-01T14:00:00.25+02:00"),
            );
            o.remove("carbon_kg");
        }),
    ];
    for l in &lines {
        let (e, flags) = kept(l);
        let parsed = schemas::parse_event(l).unwrap();
        assert_eq!(
            BronzeEvent::of_kept(&e, &flags, l),
            Some(parsed.borrowed()),
            "{}",
            String::from_utf8_lossy(l)
        );
        assert_eq!(BronzeEvent::rebuilt(&e, &flags), parsed.borrowed());
    }
    // v1: silver drops the line's carbon and tokens. A line without them is rebuilt;
    // one with either, or with an escape that could spell a key, must be parsed.
    let v1 = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        line(|o| {
            o.insert("schema_version".into(), serde_json::json!(1));
            o.remove("carbon_kg");
            f(o);
        })
    };
    let plain = v1(&|_| {});
    let (e, flags) = kept(&plain);
    let parsed = schemas::parse_event(&plain).unwrap();
    assert_eq!(parsed.carbon_kg, None);
    assert_eq!(
        BronzeEvent::of_kept(&e, &flags, &plain),
        Some(parsed.borrowed())
    );
    let with_carbon = v1(&|o| {
        o.insert("carbon_kg".into(), serde_json::json!(0.5));
    });
    let with_tokens = v1(&|o| {
        o.insert("service".into(), serde_json::json!("genai"));
        o.insert("resource_id".into(), serde_json::json!("res_g"));
        o.insert("genai_tokens".into(), serde_json::json!(1200));
    });
    let escaped = String::from_utf8(v1(&|o| {
        o.insert("carbon_kg".into(), serde_json::json!(0.5));
    }))
    .unwrap()
    .replace("carbon_kg", "carbon\\u005fkg")
    .into_bytes();
    for l in [&with_carbon, &with_tokens, &escaped] {
        let (e, flags) = kept(l);
        let parsed = schemas::parse_event(l).unwrap();
        assert!(
            parsed.carbon_kg.is_some() || parsed.genai_tokens.is_some(),
            "{}",
            String::from_utf8_lossy(l)
        );
        assert_eq!(
            BronzeEvent::of_kept(&e, &flags, l),
            None,
            "{}",
            String::from_utf8_lossy(l)
        );
    }
}
