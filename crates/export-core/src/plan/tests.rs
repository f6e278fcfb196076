use super::*;
use crate::ids::{ProfileName, TenantId};

fn profile(json: serde_json::Value) -> Profile {
    let id = ProfileId::new(
        TenantId::parse("acme").unwrap(),
        ProfileName::parse("daily").unwrap(),
    );
    Profile::new(id, serde_json::from_value(json).unwrap())
}

fn daily() -> Profile {
    profile(serde_json::json!({
        "targets": ["advisory", "vex", "policy"],
        "signing": { "keys": ["kms://acme/signer"] },
        "retention": { "default_days": 7, "max_days": 30 },
    }))
}

fn targets(list: &[&str]) -> RunRequest {
    RunRequest {
        targets: Some(list.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn err(request: RunRequest) -> PlanError {
    RunPlan::parse(&daily(), request, &Limits::default()).unwrap_err()
}

#[test]
fn distribution_refs_are_checked_against_the_type() {
    let oci = profile(serde_json::json!({
        "targets": ["advisory"],
        "distributions": ["oci", "http"],
    }));
    let request = |kind: &str, reference: Option<&str>| RunRequest {
        distribution: Some(DistributionRequest {
            kind: Some(kind.into()),
            reference: reference.map(Into::into),
            ..Default::default()
        }),
        ..Default::default()
    };
    let parse = |request| RunPlan::parse(&oci, request, &Limits::default());
    let plan = parse(request("oci", Some("registry.local:5000/exports/daily:v1"))).unwrap();
    let reference = plan.distribution.oci_reference().expect("an oci distribution");
    assert_eq!(reference.registry, "registry.local:5000");
    assert_eq!(reference.to_string(), "registry.local:5000/exports/daily:v1");
    // Stored as before the reference was parsed: type and text.
    let stored = serde_json::to_value(&plan.distribution).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"type": "oci", "ref": "registry.local:5000/exports/daily:v1"})
    );
    let read: PlannedDistribution = serde_json::from_value(stored).unwrap();
    assert_eq!(read, plan.distribution);
    assert_eq!(
        serde_json::to_value(PlannedDistribution::Http).unwrap(),
        serde_json::json!({"type": "http"})
    );
    for bad in [
        None,
        Some("exports/daily"),
        Some("registry.local/Daily"),
        Some("r.local/x@sha256:00"),
    ] {
        let err = parse(request("oci", bad)).unwrap_err();
        assert_eq!(err.field, "distribution.ref", "{bad:?}: {}", err.message);
    }
    let err = parse(request("http", Some("registry.local/exports"))).unwrap_err();
    assert_eq!(err.field, "distribution.ref");
    assert!(err.message.contains("takes no `ref`"), "{}", err.message);
}

#[test]
fn trivy_db_renders_the_advisory_targets_into_one_output() {
    let trivy = profile(serde_json::json!({
        "targets": ["advisory", "vex"],
        "formats": ["ndjson", "trivy-db"],
        "trivy": {"next_update_hours": 6},
    }));
    let parse = |request| RunPlan::parse(&trivy, request, &Limits::default());
    let plan = parse(RunRequest::default()).unwrap();
    assert!(plan.trivy_db());
    assert_eq!(plan.trivy.next_update_hours, 6);
    let advisory: Vec<String> = plan.advisory_targets().map(ToString::to_string).collect();
    assert_eq!(advisory, ["advisory"]);
    // One ndjson file per target, one database, manifest, checksums and bundle.
    assert_eq!(plan.data_files().count(), 2);
    assert_eq!(plan.planned_outputs(), 2 + 1 + 2 + 1);
    assert_eq!(
        plan.normalized_request()["formats"],
        serde_json::json!(["ndjson", "trivy-db"])
    );

    let vex_only = RunRequest {
        targets: Some(vec!["vex".into()]),
        ..Default::default()
    };
    let err = parse(vex_only).unwrap_err();
    assert_eq!(err.field, "formats");
    assert!(err.message.contains("no `advisory` target"), "{}", err.message);
    let vex_ndjson = RunRequest {
        targets: Some(vec!["vex".into()]),
        formats: Some(vec!["ndjson".into()]),
        ..Default::default()
    };
    assert!(!parse(vex_ndjson).unwrap().trivy_db());

    let encrypted = RunRequest {
        encryption: Some(EncryptionRequest {
            enabled: Some(true),
            kms_key: Some("kms://acme/key".into()),
        }),
        ..Default::default()
    };
    assert_eq!(parse(encrypted).unwrap_err().field, "encryption.enabled");

    let mut definition = trivy.definition.clone();
    definition.targets = vec![Target::parse("vex").unwrap()];
    let (field, _) = definition.validate().unwrap_err();
    assert_eq!(field, "formats");
}

#[test]
fn omitted_fields_take_the_profile_defaults() {
    let plan = RunPlan::parse(&daily(), RunRequest::default(), &Limits::default()).unwrap();
    let names: Vec<String> = plan.targets.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["advisory", "policy", "vex"]);
    assert_eq!(plan.formats, [Format::Json, Format::Ndjson]);
    assert_eq!(plan.distribution, PlannedDistribution::Http);
    assert!(!plan.signing.enabled);
    assert_eq!(plan.retention_days, 7);
    assert_eq!(plan.priority, Priority::Normal);
    assert_eq!(plan.planned_outputs(), 6 + 2 + 1);
}

#[test]
fn targets_are_validated_in_order() {
    assert_eq!(err(targets(&[])).field, "targets");
    let bad = err(targets(&["advisory", "nonsense"]));
    assert_eq!(
        (bad.kind, bad.field.as_str()),
        (PlanErrorKind::Invalid, "targets[1]")
    );
    assert_eq!(err(targets(&["vex", "vex"])).field, "targets[1]");
    let many: Vec<String> = (0..51).map(|i| format!("advisory:s{i}")).collect();
    let too_many = err(RunRequest {
        targets: Some(many),
        ..Default::default()
    });
    assert_eq!(too_many.kind, PlanErrorKind::TooLarge);
    let narrow = profile(serde_json::json!({ "targets": ["advisory:osv-go"] }));
    let refused = RunPlan::parse(&narrow, targets(&["advisory"]), &Limits::default()).unwrap_err();
    assert!(refused.message.contains("not allowed"), "{refused}");
    assert!(RunPlan::parse(&narrow, targets(&["advisory:osv-go"]), &Limits::default()).is_ok());
}

#[test]
fn other_fields_name_themselves() {
    let formats = |list: &[&str]| RunRequest {
        formats: Some(list.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    assert_eq!(err(formats(&[])).field, "formats");
    assert_eq!(err(formats(&["xml"])).field, "formats[0]");
    let dist = |kind: &str| RunRequest {
        distribution: Some(DistributionRequest {
            kind: Some(kind.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(err(dist("oci")).field, "distribution.type");
    assert_eq!(err(dist("ftp")).field, "distribution.type");
    let signing = |key: &str| RunRequest {
        distribution: Some(DistributionRequest {
            signing: Some(SigningRequest {
                enabled: Some(true),
                key_ref: Some(key.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        err(signing("kms://other/signer")).field,
        "distribution.signing.keyRef"
    );
    assert!(RunPlan::parse(&daily(), signing("kms://acme/signer"), &Limits::default()).is_ok());
    assert_eq!(
        err(RunRequest {
            retention_days: Some(31),
            ..Default::default()
        })
        .field,
        "retentionDays"
    );
    assert_eq!(
        err(RunRequest {
            retention_days: Some(0),
            ..Default::default()
        })
        .field,
        "retentionDays"
    );
    assert_eq!(
        err(RunRequest {
            priority: Some("urgent".into()),
            ..Default::default()
        })
        .field,
        "priority"
    );
    let encryption = RunRequest {
        encryption: Some(EncryptionRequest {
            enabled: Some(true),
            kms_key: None,
        }),
        ..Default::default()
    };
    assert_eq!(err(encryption).field, "encryption.enabled");
}

#[test]
fn planned_outputs_over_the_limit_are_too_large() {
    let limits = Limits {
        max_outputs: 8,
        ..Limits::default()
    };
    let error = RunPlan::parse(&daily(), RunRequest::default(), &limits).unwrap_err();
    assert_eq!(error.kind, PlanErrorKind::TooLarge);
    assert!(error.message.contains("9 outputs"), "{error}");
}

#[test]
fn normalized_request_ignores_order_and_run_specific_fields() {
    let a = RunPlan::parse(&daily(), targets(&["vex", "advisory"]), &Limits::default()).unwrap();
    let mut request = targets(&["advisory", "vex"]);
    request.retention_days = Some(3);
    request.priority = Some("high".into());
    let b = RunPlan::parse(&daily(), request, &Limits::default()).unwrap();
    assert_eq!(a.normalized_request(), b.normalized_request());
}

fn mirror_profile() -> Profile {
    profile(serde_json::json!({
        "targets": ["vex", "advisory"],
        "formats": ["json"],
        "signing": { "keys": ["kms://acme/signer"] },
        "bundle": { "enabled": false },
        "mirror": { "mode": "delta" },
    }))
}

fn mirror_request(mode: Option<&str>, base: Option<&str>) -> RunRequest {
    RunRequest {
        mirror: Some(MirrorRequest {
            mode: mode.map(str::to_owned),
            base_run_id: base.map(str::to_owned),
        }),
        ..Default::default()
    }
}

#[test]
fn a_mirror_profile_makes_signed_bundles_of_every_target_in_ndjson() {
    let plan = RunPlan::parse(&mirror_profile(), RunRequest::default(), &Limits::default()).unwrap();
    let mirror = plan.mirror.as_ref().unwrap();
    assert_eq!((mirror.mode, mirror.valid_days), (MirrorMode::Delta, 30));
    assert_eq!(plan.formats, vec![Format::Ndjson]);
    assert_eq!(plan.targets.len(), 2);
    assert!(plan.bundle.enabled && plan.signing.enabled);
    // Two data files, mirror.json, tombstones.ndjson, manifest, checksums, two
    // envelopes and the bundle.
    assert_eq!(plan.planned_outputs(), 9);
    assert_eq!(
        plan.normalized_request()["mirror"],
        serde_json::json!({ "mode": "delta" })
    );
    let base = "export-run::acme::2026-12-01::0001";
    let full = RunPlan::parse(
        &mirror_profile(),
        mirror_request(Some("full"), None),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(full.mirror.unwrap().mode, MirrorMode::Full);
    let delta = RunPlan::parse(
        &mirror_profile(),
        mirror_request(None, Some(base)),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(delta.mirror.unwrap().base_run_id.unwrap().to_string(), base);
}

#[test]
fn a_mirror_request_that_cannot_be_one_names_its_field() {
    let field = |profile: &Profile, request: RunRequest| {
        RunPlan::parse(profile, request, &Limits::default())
            .unwrap_err()
            .field
    };
    let base = Some("export-run::acme::2026-12-01::0001");
    assert_eq!(field(&daily(), mirror_request(None, None)), "mirror");
    assert_eq!(
        field(&mirror_profile(), mirror_request(Some("fast"), None)),
        "mirror.mode"
    );
    assert_eq!(
        field(&mirror_profile(), mirror_request(Some("full"), base)),
        "mirror.baseRunId"
    );
    assert_eq!(
        field(&mirror_profile(), mirror_request(None, Some("run-1"))),
        "mirror.baseRunId"
    );
    assert_eq!(field(&mirror_profile(), targets(&["vex"])), "targets");
    let unsigned = RunRequest {
        distribution: Some(DistributionRequest {
            signing: Some(SigningRequest {
                enabled: Some(false),
                key_ref: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(field(&mirror_profile(), unsigned), "distribution.signing.enabled");
}
