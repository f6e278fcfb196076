//! `exportctl webhooks`: register, list, show and delete the tenant's webhooks, rotate
//! a secret, and list a webhook's deliveries (SPEC §16). Creating, deleting and
//! rotating need a token with `export:admin`.

use clap::Subcommand;
use export_api_types::{CreateWebhookRequest, DeliveryList, WebhookList, WebhookResponse};
use reqwest::Method;

use crate::api::{check, Api};
use crate::table::table;
use crate::{print_json, Done};

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Registers a webhook; prints its secret, which is shown this once.
    Create {
        /// `https://…` (plain `http://` only to a host the server's egress allowlist lists).
        #[arg(long)]
        url: String,
        /// `run.succeeded`, `run.failed`, `run.cancelled` or `run.expired`; repeat for more.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// The signing secret (16 to 256 printable characters); generated when absent.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Lists the tenant's webhooks.
    List,
    /// Shows one webhook.
    Show { id: String },
    /// Deletes a webhook with its pending deliveries and history.
    Delete { id: String },
    /// Lists a webhook's deliveries and their attempts, newest first.
    Deliveries { id: String },
    /// Replaces a webhook's secret; prints the new one, shown this once.
    RotateSecret { id: String },
}

pub(crate) async fn run(api: &Api, command: WebhooksCommand, json: bool) -> anyhow::Result<Done> {
    match command {
        WebhooksCommand::Create { url, events, secret } => {
            let body = CreateWebhookRequest { url, events, secret };
            let created: WebhookResponse = api
                .json(Method::POST, "/export-center/webhooks", |request| {
                    request.json(&body)
                })
                .await?;
            print_webhook(&created, json);
        }
        WebhooksCommand::List => {
            let list: WebhookList = api.get("/export-center/webhooks").await?;
            if json {
                print_json(&list);
            } else {
                print!("{}", webhooks_table(&list.items));
            }
        }
        WebhooksCommand::Show { id } => {
            let webhook: WebhookResponse = api.get(&webhook_path(&id)?).await?;
            print_webhook(&webhook, json);
        }
        WebhooksCommand::Delete { id } => {
            let response = api
                .send(Method::DELETE, &webhook_path(&id)?, |request| request)
                .await?;
            check(response).await?;
            if !json {
                println!("deleted {id}");
            }
        }
        WebhooksCommand::Deliveries { id } => {
            let path = format!("{}/deliveries", webhook_path(&id)?);
            let list: DeliveryList = api.get(&path).await?;
            if json {
                print_json(&list);
            } else {
                print!("{}", deliveries_table(&list));
            }
        }
        WebhooksCommand::RotateSecret { id } => {
            let path = format!("{}/rotate-secret", webhook_path(&id)?);
            let rotated: WebhookResponse = api.json(Method::POST, &path, |request| request).await?;
            print_webhook(&rotated, json);
        }
    }
    Ok(Done::Ok)
}

fn webhook_path(id: &str) -> anyhow::Result<String> {
    if id.is_empty() || id.contains(['/', '?', '#', '%']) || id.chars().any(char::is_whitespace) {
        anyhow::bail!("`{id}` is not a webhook id (export-webhook::<tenant>::<hex>)");
    }
    Ok(format!("/export-center/webhooks/{id}"))
}

fn print_webhook(webhook: &WebhookResponse, json: bool) {
    if json {
        print_json(webhook);
        return;
    }
    print!("{}", webhooks_table(std::slice::from_ref(webhook)));
    if let Some(secret) = &webhook.secret {
        println!("secret: {secret}");
        println!("(shown this once: keep it where your receiver can read it)");
    }
}

fn webhooks_table(items: &[WebhookResponse]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|webhook| {
            vec![
                webhook.id.clone(),
                webhook.url.clone(),
                webhook.events.join(","),
                webhook.created_at.clone(),
            ]
        })
        .collect();
    table(&["ID", "URL", "EVENTS", "CREATED"], &rows)
}

fn deliveries_table(list: &DeliveryList) -> String {
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|delivery| {
            let statuses: Vec<String> = delivery
                .attempts
                .iter()
                .map(|attempt| match (attempt.http_status, &attempt.error) {
                    (Some(status), _) => status.to_string(),
                    (None, Some(error)) => error.split(':').next().unwrap_or("error").to_owned(),
                    (None, None) => "-".to_owned(),
                })
                .collect();
            let when = delivery
                .next_attempt_at
                .as_ref()
                .or(delivery.delivered_at.as_ref())
                .or(delivery.dead_lettered_at.as_ref())
                .cloned()
                .unwrap_or_default();
            vec![
                delivery.event.clone(),
                delivery.run_id.clone(),
                delivery.state.clone(),
                when,
                statuses.join(","),
            ]
        })
        .collect();
    table(&["EVENT", "RUN", "STATE", "NEXT/AT", "ATTEMPTS"], &rows)
}
