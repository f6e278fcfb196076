//! `exportctl profiles …`: list the tenant's profiles, and manage those of the API, each
//! change a new revision (SPEC §16).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use export_api_types::{ProfileList, ProfileResponse, ProfileRevisionList};
use reqwest::Method;

use crate::api::Api;
use crate::{print_json, profile_id, table, Done};

#[derive(Debug, Subcommand)]
pub(crate) enum ProfilesCommand {
    /// Lists the tenant's profiles that take runs (the default).
    List,
    /// Creates a profile from a definition file (needs `export:admin`).
    Create {
        /// The new profile's name: lowercase letters, digits and `-`.
        name: String,
        /// The definition: JSON, or TOML when the file ends in `.toml`, with the keys of
        /// a `[tenants.<t>.profiles.<name>]` table of the server's configuration; `-`
        /// reads JSON from standard input.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
    /// Records a new revision of a profile from a definition file (needs `export:admin`).
    Update {
        /// The profile's name or id.
        profile: String,
        /// The whole new definition, as for `create`.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
    /// Shows a profile at its newest revision.
    Show {
        /// The profile's name or id.
        profile: String,
    },
    /// Lists every revision of a profile, oldest first.
    Revisions {
        /// The profile's name or id.
        profile: String,
    },
    /// Archives a profile: no new runs; its runs and revisions stay (needs `export:admin`).
    Delete {
        /// The profile's name or id.
        profile: String,
    },
}

pub(crate) async fn run(api: &Api, command: ProfilesCommand, json: bool) -> anyhow::Result<Done> {
    let path = |profile: &str| format!("/export-center/profiles/{}", profile_id(api.tenant(), profile));
    match command {
        ProfilesCommand::List => {
            let profiles: ProfileList = api.get("/export-center/profiles").await?;
            if json {
                print_json(&profiles);
            } else {
                print!("{}", table::profiles(&profiles.items));
            }
        }
        ProfilesCommand::Create { name, file } => {
            let mut body = definition(&file)?;
            let fields = body.as_object_mut().context("the definition must be an object")?;
            if fields
                .insert("name".to_owned(), serde_json::Value::String(name))
                .is_some()
            {
                bail!(
                    "{}: leave `name` out, it is given on the command line",
                    file.display()
                );
            }
            let profile: ProfileResponse = api
                .json(Method::POST, "/export-center/profiles", |request| {
                    request.json(&body)
                })
                .await?;
            show(&profile, json);
        }
        ProfilesCommand::Update { profile, file } => {
            let body = definition(&file)?;
            let profile: ProfileResponse = api
                .json(Method::PUT, &path(&profile), |request| request.json(&body))
                .await?;
            show(&profile, json);
        }
        ProfilesCommand::Show { profile } => show(&api.get(&path(&profile)).await?, json),
        ProfilesCommand::Revisions { profile } => {
            let revisions: ProfileRevisionList = api.get(&format!("{}/revisions", path(&profile))).await?;
            if json {
                print_json(&revisions);
            } else {
                print!("{}", table::revisions(&revisions.items));
            }
        }
        ProfilesCommand::Delete { profile } => {
            let response = api
                .send(Method::DELETE, &path(&profile), |request| request)
                .await?;
            crate::api::check(response).await?;
            if !json {
                println!("archived {}", profile_id(api.tenant(), &profile));
            }
        }
    }
    Ok(Done::Ok)
}

fn show(profile: &ProfileResponse, json: bool) {
    if json {
        print_json(profile);
    } else {
        print!("{}", table::profile(profile));
    }
}

/// A definition file as the JSON the API takes.
fn definition(path: &Path) -> anyhow::Result<serde_json::Value> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    }
    if path.extension().is_some_and(|extension| extension == "toml") {
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
        serde_json::to_value(value).with_context(|| format!("{}: not a definition", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
    }
}
