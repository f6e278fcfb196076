//! Minimal projects that pin one package version, in the lockfile Trivy reads for each
//! ecosystem (the formats checked against Trivy 0.59.1 in `docs/trivy-db-format.md` §6).

use std::path::Path;

/// Writes a project into `dir` pinning `name` at `version`; returns the lockfile's name.
pub(crate) fn write(dir: &Path, ecosystem: &str, name: &str, version: &str) -> &'static str {
    std::fs::create_dir_all(dir).unwrap();
    let (file, text) = match ecosystem {
        "Go" => ("go.mod", format!("module example.com/pin\n\ngo 1.21\n\nrequire {name} v{version}\n")),
        "PyPI" => ("requirements.txt", format!("{name}=={version}\n")),
        "PyPI-poetry" => {
            let pyproject = format!(
                "[tool.poetry]\nname = \"pin\"\nversion = \"0.1.0\"\ndescription = \"\"\nauthors = []\n\n\
                 [tool.poetry.dependencies]\npython = \"^3.9\"\n{name} = \"{version}\"\n"
            );
            std::fs::write(dir.join("pyproject.toml"), pyproject).unwrap();
            (
                "poetry.lock",
                format!(
                    "[[package]]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"\"\noptional = false\n\
                     python-versions = \"*\"\nfiles = []\n\n[metadata]\nlock-version = \"2.0\"\n\
                     python-versions = \"^3.9\"\ncontent-hash = \"0\"\n"
                ),
            )
        }
        "npm" => (
            "package-lock.json",
            serde_json::json!({
                "name": "pin", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
                "packages": {
                    "": {"name": "pin", "version": "1.0.0", "dependencies": {name: version}},
                    format!("node_modules/{name}"): {"version": version}
                }
            })
            .to_string(),
        ),
        "Maven" => ("gradle.lockfile", format!("{name}:{version}=compileClasspath\nempty=\n")),
        "crates.io" => (
            "Cargo.lock",
            format!(
                "version = 3\n\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
            ),
        ),
        "RubyGems" => (
            "Gemfile.lock",
            format!(
                "GEM\n  remote: https://rubygems.org/\n  specs:\n    {name} ({version})\n\nPLATFORMS\n  ruby\n\n\
                 DEPENDENCIES\n  {name}\n\nBUNDLED WITH\n   2.4.10\n"
            ),
        ),
        "NuGet" => (
            "packages.lock.json",
            serde_json::json!({"version": 1, "dependencies": {"net8.0": {name: {
                "type": "Direct", "requested": format!("[{version}, )"), "resolved": version, "contentHash": "AA=="
            }}}})
            .to_string(),
        ),
        "Packagist" => (
            "composer.lock",
            serde_json::json!({"packages": [{"name": name, "version": version}], "packages-dev": []}).to_string(),
        ),
        other => panic!("no project template for {other}"),
    };
    std::fs::write(dir.join(file), text).unwrap();
    file
}
