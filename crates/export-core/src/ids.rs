//! The identifiers of SPEC §1. Holding one of these types means the text is valid:
//! every constructor is a `parse` that checks the format.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {reason}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl IdError {
    fn new(what: &'static str, value: &str, reason: &'static str) -> Self {
        let value = value.chars().take(80).collect();
        Self { what, value, reason }
    }
}

const NAME_RULE: &str = "expected 1-64 lowercase letters, digits and `-`";

fn check_name(what: &'static str, text: &str) -> Result<(), IdError> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdError::new(what, text, NAME_RULE))
    }
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(text)?;
                Ok(Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A tenant: the isolation boundary. 1-64 of `[a-z0-9-]`.
    TenantId,
    "tenant",
    |text| check_name("tenant", text)
);

string_id!(
    /// A profile's short name inside its tenant. 1-64 of `[a-z0-9-]`.
    ProfileName,
    "profile name",
    |text| check_name("profile name", text)
);

string_id!(
    /// A named feed inside a tenant (`osv-go`, `redhat-csaf`): 1-64 of `[a-z0-9._-]`,
    /// starting with a letter or digit.
    SourceName,
    "source",
    |text| {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(())
        } else {
            Err(IdError::new(
                "source",
                text,
                "expected 1-64 lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            ))
        }
    }
);

string_id!(
    /// An optional sub-scope inside a tenant (`X-StellaOps-Project`): 1-64 of
    /// `[A-Za-z0-9._-]`.
    ProjectId,
    "project",
    |text| {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(())
        } else {
            Err(IdError::new("project", text, "expected 1-64 letters, digits, `-`, `_` and `.`"))
        }
    }
);

/// `export-profile::<tenant>::<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileId {
    pub tenant: TenantId,
    pub name: ProfileName,
}

impl ProfileId {
    const PREFIX: &'static str = "export-profile::";

    pub fn new(tenant: TenantId, name: ProfileName) -> Self {
        Self { tenant, name }
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        let rest = text
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| IdError::new("profile id", text, "expected `export-profile::<tenant>::<name>`"))?;
        let (tenant, name) = rest
            .split_once("::")
            .ok_or_else(|| IdError::new("profile id", text, "expected `export-profile::<tenant>::<name>`"))?;
        Ok(Self {
            tenant: TenantId::parse(tenant)?,
            name: ProfileName::parse(name)?,
        })
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}::{}", Self::PREFIX, self.tenant, self.name)
    }
}

/// `export-run::<tenant>::<YYYY-MM-DD>::<seq>`, `seq` zero-padded to 4 digits, per
/// tenant per UTC day, starting at 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId {
    pub tenant: TenantId,
    pub date: NaiveDate,
    pub seq: u32,
}

impl RunId {
    const PREFIX: &'static str = "export-run::";

    pub fn new(tenant: TenantId, date: NaiveDate, seq: u32) -> Self {
        assert!(seq >= 1, "run sequence numbers start at 1");
        Self { tenant, date, seq }
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        parse_dated("run id", Self::PREFIX, text).map(|(tenant, date, seq)| Self { tenant, date, seq })
    }

    /// The distribution of this run (same tenant, date and seq).
    pub fn distribution_id(&self) -> DistributionId {
        DistributionId {
            tenant: self.tenant.clone(),
            date: self.date,
            seq: self.seq,
        }
    }

    /// The `seq` as written in the id (`0003`), also the default OCI tag.
    pub fn seq_text(&self) -> String {
        format!("{:04}", self.seq)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}::{}::{:04}",
            Self::PREFIX,
            self.tenant,
            self.date.format("%Y-%m-%d"),
            self.seq
        )
    }
}

/// `export-dist::<tenant>::<YYYY-MM-DD>::<seq>`, one per run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DistributionId {
    pub tenant: TenantId,
    pub date: NaiveDate,
    pub seq: u32,
}

impl DistributionId {
    const PREFIX: &'static str = "export-dist::";

    pub fn parse(text: &str) -> Result<Self, IdError> {
        parse_dated("distribution id", Self::PREFIX, text).map(|(tenant, date, seq)| Self {
            tenant,
            date,
            seq,
        })
    }

    pub fn run_id(&self) -> RunId {
        RunId {
            tenant: self.tenant.clone(),
            date: self.date,
            seq: self.seq,
        }
    }
}

impl fmt::Display for DistributionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}::{}::{:04}",
            Self::PREFIX,
            self.tenant,
            self.date.format("%Y-%m-%d"),
            self.seq
        )
    }
}

/// Parses `<prefix><tenant>::<YYYY-MM-DD>::<seq>` and insists on the one canonical
/// spelling, so that two different strings never name the same run.
fn parse_dated(what: &'static str, prefix: &str, text: &str) -> Result<(TenantId, NaiveDate, u32), IdError> {
    let shape = "expected `<prefix>::<tenant>::<YYYY-MM-DD>::<seq>`";
    let rest = text
        .strip_prefix(prefix)
        .ok_or_else(|| IdError::new(what, text, shape))?;
    let mut parts = rest.split("::");
    let (Some(tenant), Some(date), Some(seq), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdError::new(what, text, shape));
    };
    let tenant = TenantId::parse(tenant)?;
    // Exactly `YYYY-MM-DD` in ASCII digits, the form `Display` writes, so an id reads back
    // as it was written: chrono's `%Y-%m-%d` alone also takes a sign, spaces and fewer digits.
    let date_ok = date.len() == 10
        && date.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .filter(|_| date_ok)
        .ok_or_else(|| IdError::new(what, text, "the date must be a valid YYYY-MM-DD"))?;
    let seq_ok = seq.len() >= 4 && seq.len() <= 9 && seq.bytes().all(|b| b.is_ascii_digit());
    let seq_value: u32 = seq.parse().ok().filter(|n| seq_ok && *n >= 1).ok_or_else(|| {
        IdError::new(
            what,
            text,
            "the sequence must be a number of at least 4 digits, starting at 0001",
        )
    })?;
    if format!("{seq_value:04}") != seq {
        return Err(IdError::new(
            what,
            text,
            "the sequence must be zero-padded to exactly 4 digits",
        ));
    }
    Ok((tenant, date, seq_value))
}

macro_rules! serde_via_display {
    ($($name:ident),*) => {$(
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }
    )*};
}

serde_via_display!(ProfileId, RunId, DistributionId);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn run_id_round_trips() {
        let id = RunId::parse("export-run::tenant-default::2025-12-06::0003").unwrap();
        assert_eq!(id.tenant.as_str(), "tenant-default");
        assert_eq!(id.seq, 3);
        assert_eq!(id.to_string(), "export-run::tenant-default::2025-12-06::0003");
        assert_eq!(
            id.distribution_id().to_string(),
            "export-dist::tenant-default::2025-12-06::0003"
        );
        assert_eq!(
            RunId::parse("export-run::t::2025-12-06::12345").unwrap().seq,
            12345
        );
    }

    #[test]
    fn malformed_run_ids_are_rejected() {
        for bad in [
            "",
            "export-run::",
            "export-run::Tenant::2025-12-06::0001",
            "export-run::t::2025-13-06::0001",
            "export-run::t::2025-12-6::0001",
            "export-run::t::2025-12-06::1",
            "export-run::t::2025-12-06::0000",
            "export-run::t::2025-12-06::00001",
            "export-run::t::2025-12-06::0001::x",
            "export-run::t::2025-12-06::-001",
            "export-dist::t::2025-12-06::0001",
            "export-run::../..::2025-12-06::0001",
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    /// Found by the fuzz target `signed_url` (docs/reliability.md): chrono's `%Y` reads a
    /// signed year of three digits (`-126`), which `Display` writes with four (`-0126`), so
    /// a link signed for such a run named an id that no longer parsed, and was refused.
    #[test]
    fn dated_ids_are_read_only_as_they_are_written() {
        for bad in [
            "export-run::t::-126-12-31::0001",
            "export-run::t::+126-12-31::0001",
            "export-run::t::-001-01-01::0001",
            "export-run::t:: 126-12-31::0001",
            "export-run::t::    0-1-10::0001",
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad} should be rejected");
            let dist = bad.replace("export-run::", "export-dist::");
            assert!(DistributionId::parse(&dist).is_err(), "{dist} should be rejected");
        }
        for good in [
            "export-run::t::0000-01-01::0001",
            "export-run::t::9999-12-31::0001",
        ] {
            assert_eq!(RunId::parse(good).unwrap().to_string(), good);
        }
    }

    #[test]
    fn profile_id_round_trips() {
        let id = ProfileId::parse("export-profile::tenant-default::daily-vex").unwrap();
        assert_eq!(id.name.as_str(), "daily-vex");
        assert_eq!(id.to_string(), "export-profile::tenant-default::daily-vex");
        assert!(ProfileId::parse("export-profile::tenant-default").is_err());
        assert!(ProfileId::parse("export-profile::a::b::c").is_err());
    }

    #[test]
    fn tenant_names_follow_the_rule() {
        assert!(TenantId::parse("acme-1").is_ok());
        assert!(TenantId::parse(&"a".repeat(64)).is_ok());
        assert!(TenantId::parse(&"a".repeat(65)).is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a/b").is_err());
    }

    proptest! {
        #[test]
        fn any_valid_run_id_parses_back_to_itself(
            tenant in "[a-z0-9-]{1,64}",
            days in 0i64..40_000,
            seq in 1u32..999_999,
        ) {
            let date = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(days as u64);
            let id = RunId::new(TenantId::parse(&tenant).unwrap(), date, seq);
            prop_assert_eq!(RunId::parse(&id.to_string()).unwrap(), id);
        }

        #[test]
        fn a_run_id_that_parses_is_displayed_as_written(
            text in "export-run::[a-z]{1,3}::[-+ 0-9]{3,5}-[0-9]{1,2}-[0-9]{1,2}::[0-9]{4,5}",
        ) {
            if let Ok(id) = RunId::parse(&text) {
                prop_assert_eq!(id.to_string(), text);
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,100}") {
            let _ = RunId::parse(&text);
            let _ = ProfileId::parse(&text);
        }
    }
}
