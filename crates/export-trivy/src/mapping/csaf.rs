//! CSAF 2.0 advisories: products that carry a package URL of an ecosystem Trivy scans
//! become packages, their `product_status` the affected and fixed versions.
//!
//! A product's version comes from its branch (`product_version`, or `product_version_range`
//! written as a `vers:` range) or else from the package URL's `@version`. Affected products
//! (`known_affected`, `first_affected`, `last_affected`) give `VulnerableVersions`; fixed
//! ones (`fixed`, `first_fixed`) give `PatchedVersions`. Everything else is counted.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{
    key_ids, merge_packages, rfc3339, Cvss, Detail, Ecosystem, Mapped, Outcome, PackageVersions, Severity,
};
use crate::bolt::MAX_KEY_SIZE;
use crate::warnings::WarningCode;

/// A product of the tree that Trivy can match: its package and its version(s).
#[derive(Debug, Clone)]
struct Product {
    ecosystem: Ecosystem,
    name: String,
    versions: Versions,
}

#[derive(Debug, Clone)]
enum Versions {
    /// One version: `=V` when affected, `V` when fixed.
    Exact(String),
    /// A `vers:` range as Trivy constraints.
    Range(Vec<String>),
    /// Why the version cannot be expressed.
    Unexpressible(String),
}

/// What a product id stands for: a package Trivy scans, or why not.
#[derive(Debug, Clone)]
enum ProductRef {
    Package(Product),
    Unsupported(String),
}

const AFFECTED: [&str; 3] = ["known_affected", "first_affected", "last_affected"];
const FIXED: [&str; 2] = ["fixed", "first_fixed"];

pub(crate) fn map(record_id: &str, document: &[u8]) -> Outcome {
    let mut outcome = Outcome::default();
    let csaf: Value = match serde_json::from_slice(document) {
        Ok(csaf @ Value::Object(_)) => csaf,
        Ok(_) => {
            outcome.note(
                WarningCode::UnparseableAdvisory,
                format!("{record_id}: not a JSON object"),
            );
            return outcome;
        }
        Err(err) => {
            outcome.note(WarningCode::UnparseableAdvisory, format!("{record_id}: {err}"));
            return outcome;
        }
    };
    let tracking_id = csaf["document"]["tracking"]["id"].as_str().unwrap_or(record_id);
    let products = products(&csaf["product_tree"]);

    for vulnerability in csaf["vulnerabilities"].as_array().into_iter().flatten() {
        let mut packages: BTreeMap<(Ecosystem, String), PackageVersions> = BTreeMap::new();
        let statuses = [(&AFFECTED[..], true), (&FIXED[..], false)];
        for (names, affected) in statuses {
            for product_id in names
                .iter()
                .flat_map(|name| strings(&vulnerability["product_status"][name]))
            {
                let product = match products.get(product_id) {
                    Some(ProductRef::Package(product)) => product,
                    Some(ProductRef::Unsupported(reason)) => {
                        outcome.note(WarningCode::UnsupportedEcosystem, reason.clone());
                        continue;
                    }
                    None => continue,
                };
                let package = packages
                    .entry((product.ecosystem, product.name.clone()))
                    .or_insert_with(|| PackageVersions {
                        ecosystem: product.ecosystem,
                        name: product.name.clone(),
                        vulnerable: Vec::new(),
                        patched: Vec::new(),
                    });
                match (&product.versions, affected) {
                    (Versions::Exact(version), true) => package.vulnerable.push(format!("={version}")),
                    (Versions::Exact(version), false) => package.patched.push(version.clone()),
                    (Versions::Range(constraints), true) => {
                        package.vulnerable.extend(constraints.iter().cloned())
                    }
                    // A fixed range adds nothing Trivy can use: `PatchedVersions` are versions.
                    (Versions::Range(_), false) => {}
                    (Versions::Unexpressible(reason), true) => {
                        outcome.note(WarningCode::UnexpressibleRange, reason.clone())
                    }
                    (Versions::Unexpressible(_), false) => {}
                }
            }
        }
        let packages: Vec<PackageVersions> = packages
            .into_values()
            .filter(|package| {
                let expressible = !package.vulnerable.is_empty();
                if !expressible {
                    outcome.note(
                        WarningCode::UnexpressibleRange,
                        "CSAF package without an affected version",
                    );
                }
                expressible
            })
            .collect();
        if packages.is_empty() {
            continue;
        }
        let own_id = vulnerability["cve"].as_str().unwrap_or(tracking_id);
        let mut aliases: Vec<String> = vec![tracking_id.to_owned()];
        aliases.extend(
            vulnerability["ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| id["text"].as_str().map(str::to_owned)),
        );
        let (ids, vendor_ids) = key_ids(own_id, &aliases);
        outcome.mapped.push(Mapped {
            ids,
            vendor_ids,
            packages: merge_packages(packages),
            detail: detail(&csaf, vulnerability),
        });
    }
    outcome
}

/// Every product id of the tree: branches (with the version their branch gives),
/// `full_product_names`, and relationships (which stand for the product they refer to).
fn products(tree: &Value) -> HashMap<String, ProductRef> {
    let mut products = HashMap::new();
    walk_branches(&tree["branches"], None, &mut products);
    for product in tree["full_product_names"].as_array().into_iter().flatten() {
        insert_product(product, None, &mut products);
    }
    for relationship in tree["relationships"].as_array().into_iter().flatten() {
        let full_name = &relationship["full_product_name"];
        let (Some(id), Some(reference)) = (
            full_name["product_id"].as_str(),
            relationship["product_reference"].as_str(),
        ) else {
            continue;
        };
        if full_name["product_identification_helper"]["purl"].is_string() {
            insert_product(full_name, None, &mut products);
        } else if let Some(referred) = products.get(reference).cloned() {
            products.insert(id.to_owned(), referred);
        }
    }
    products
}

fn walk_branches<'a>(
    branches: &'a Value,
    version: Option<(&'a str, &'a str)>,
    products: &mut HashMap<String, ProductRef>,
) {
    for branch in branches.as_array().into_iter().flatten() {
        let category = branch["category"].as_str().unwrap_or_default();
        let name = branch["name"].as_str().unwrap_or_default();
        let version = match category {
            "product_version" | "product_version_range" => Some((category, name)),
            _ => version,
        };
        if branch["product"].is_object() {
            insert_product(&branch["product"], version, products);
        }
        walk_branches(&branch["branches"], version, products);
    }
}

fn insert_product(
    product: &Value,
    branch_version: Option<(&str, &str)>,
    products: &mut HashMap<String, ProductRef>,
) {
    let Some(id) = product["product_id"].as_str() else {
        return;
    };
    let product_ref = match product["product_identification_helper"]["purl"].as_str() {
        None => ProductRef::Unsupported("CSAF product without a package URL".to_owned()),
        Some(purl) => match Purl::parse(purl) {
            None => ProductRef::Unsupported("CSAF product with an unreadable package URL".to_owned()),
            Some(purl) => match Ecosystem::from_purl_type(&purl.purl_type) {
                None => ProductRef::Unsupported(format!("pkg:{}", purl.purl_type)),
                Some(ecosystem) => {
                    let versions = match (branch_version, purl.version) {
                        (Some(("product_version_range", range)), _) => vers_constraints(range),
                        (Some((_, version)), _) if !version.is_empty() => Versions::Exact(version.to_owned()),
                        (_, Some(version)) => Versions::Exact(version),
                        _ => Versions::Unexpressible("CSAF product without a version".to_owned()),
                    };
                    ProductRef::Package(Product {
                        ecosystem,
                        name: ecosystem.purl_package_name(purl.namespace.as_deref(), &purl.name),
                        versions,
                    })
                }
            },
        },
    };
    products.insert(id.to_owned(), product_ref);
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// The parts of a package URL (`pkg:type/namespace/name@version?qualifiers#subpath`)
/// that name a package, percent-decoded.
#[derive(Debug, PartialEq, Eq)]
struct Purl {
    purl_type: String,
    namespace: Option<String>,
    name: String,
    version: Option<String>,
}

impl Purl {
    fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("pkg:")?.trim_start_matches('/');
        let rest = rest.split(['#', '?']).next()?;
        let (path, version) = match rest.rsplit_once('@') {
            // An `@` in the path's last segment is the version; an npm scope is percent-encoded.
            Some((path, version)) if !version.contains('/') => (path, Some(percent_decode(version)?)),
            _ => (rest, None),
        };
        let (purl_type, path) = path.split_once('/')?;
        let (namespace, name) = match path.rsplit_once('/') {
            Some((namespace, name)) => (Some(percent_decode(namespace)?), name),
            None => (None, path),
        };
        let name = percent_decode(name)?;
        if name.is_empty() || name.len() > MAX_KEY_SIZE / 2 {
            return None;
        }
        Some(Self {
            purl_type: purl_type.to_ascii_lowercase(),
            namespace,
            name,
            version: version.filter(|v| !v.is_empty()),
        })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A `vers:<scheme>/<constraint>|…` range as Trivy constraints: `>=`/`>` opens an interval
/// that the next `<`/`<=` closes (`>=1.0, <1.2`), `=`/bare versions are equalities, `*` is
/// every version. `!=` (an exclusion) has no Trivy form and makes the range unexpressible.
fn vers_constraints(range: &str) -> Versions {
    let unexpressible = |why: &str| Versions::Unexpressible(format!("CSAF product_version_range {why}"));
    let Some((_scheme, constraints)) = range.trim().strip_prefix("vers:").and_then(|r| r.split_once('/'))
    else {
        return unexpressible("not in vers: syntax");
    };
    if constraints.trim() == "*" {
        return Versions::Range(vec![">=0".to_owned()]);
    }
    let mut out = Vec::new();
    let mut lower: Option<String> = None;
    for constraint in constraints.split('|').map(str::trim) {
        let (op, version) = [">=", "<=", "!=", ">", "<", "="]
            .into_iter()
            .find_map(|op| constraint.strip_prefix(op).map(|v| (op, v.trim())))
            .unwrap_or(("=", constraint));
        if version.is_empty() {
            return unexpressible("with an empty version");
        }
        match op {
            ">=" | ">" => {
                out.extend(lower.take());
                lower = Some(format!("{op}{version}"));
            }
            "<" | "<=" => match lower.take() {
                Some(lower) => out.push(format!("{lower}, {op}{version}")),
                None => out.push(format!("{op}{version}")),
            },
            "=" => out.push(format!("={version}")),
            _ => return unexpressible("with a != constraint"),
        }
    }
    out.extend(lower);
    Versions::Range(out)
}

/// The vulnerability's details: its own title and notes, else the document's; CVSS and
/// severity from its scores, else its impact threat, else the document's aggregate severity.
fn detail(csaf: &Value, vulnerability: &Value) -> Detail {
    let document = &csaf["document"];
    let note = |notes: &Value, category: &str| {
        notes
            .as_array()
            .into_iter()
            .flatten()
            .find(|note| note["category"] == category)
            .and_then(|note| note["text"].as_str())
            .map(str::to_owned)
    };
    let mut cvss = Cvss::default();
    let mut score_severity = None;
    for score in vulnerability["scores"].as_array().into_iter().flatten() {
        if let Some(vector) = score["cvss_v3"]["vectorString"].as_str() {
            cvss.v3_vector = Some(vector.to_owned());
            cvss.v3_score = score["cvss_v3"]["baseScore"].as_f64();
            score_severity = score["cvss_v3"]["baseSeverity"]
                .as_str()
                .and_then(Severity::parse);
        }
        if let Some(vector) = score["cvss_v2"]["vectorString"].as_str() {
            cvss.v2_vector = Some(vector.to_owned());
            cvss.v2_score = score["cvss_v2"]["baseScore"].as_f64();
        }
    }
    let threat_severity = vulnerability["threats"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|threat| threat["category"] == "impact")
        .find_map(|threat| threat["details"].as_str().and_then(Severity::parse));
    let severity = score_severity
        .or_else(|| cvss.severity())
        .or(threat_severity)
        .or_else(|| {
            document["aggregate_severity"]["text"]
                .as_str()
                .and_then(Severity::parse)
        });
    let mut references: Vec<String> = [&vulnerability["references"], &document["references"]]
        .into_iter()
        .flat_map(|refs| refs.as_array().into_iter().flatten())
        .filter_map(|reference| reference["url"].as_str().map(str::to_owned))
        .collect();
    super::dedup_in_order(&mut references);
    Detail {
        title: vulnerability["title"]
            .as_str()
            .or(document["title"].as_str())
            .map(str::to_owned),
        description: note(&vulnerability["notes"], "description")
            .or_else(|| note(&vulnerability["notes"], "summary"))
            .or_else(|| note(&document["notes"], "summary")),
        severity,
        cvss,
        cwe_ids: vulnerability["cwe"]["id"]
            .as_str()
            .map(|id| vec![id.to_owned()])
            .unwrap_or_default(),
        references,
        published: rfc3339(
            vulnerability["release_date"]
                .as_str()
                .or(document["tracking"]["initial_release_date"].as_str()),
        ),
        modified: rfc3339(document["tracking"]["current_release_date"].as_str()),
    }
}

#[cfg(test)]
#[path = "csaf_tests.rs"]
mod tests;
