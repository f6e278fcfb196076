//! The ecosystems Trivy scans for language packages: bucket prefixes and package names
//! written the way Trivy looks them up (`docs/trivy-db-format.md` §2.1).

/// A language ecosystem with a Trivy bucket prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Ecosystem {
    Go,
    Pip,
    Npm,
    Maven,
    Cargo,
    RubyGems,
    NuGet,
    Composer,
}

impl Ecosystem {
    /// The ecosystem of an OSV `affected[].package.ecosystem`, if Trivy scans it.
    pub(crate) fn from_osv(name: &str) -> Option<Self> {
        let ecosystems = [
            ("Go", Self::Go),
            ("PyPI", Self::Pip),
            ("npm", Self::Npm),
            ("Maven", Self::Maven),
            ("crates.io", Self::Cargo),
            ("RubyGems", Self::RubyGems),
            ("NuGet", Self::NuGet),
            ("Packagist", Self::Composer),
        ];
        ecosystems
            .into_iter()
            .find(|(osv, _)| osv.eq_ignore_ascii_case(name))
            .map(|(_, ecosystem)| ecosystem)
    }

    /// The ecosystem of a package URL type (`pkg:<type>/…`), if Trivy scans it.
    pub(crate) fn from_purl_type(purl_type: &str) -> Option<Self> {
        Some(match purl_type {
            "golang" => Self::Go,
            "pypi" => Self::Pip,
            "npm" => Self::Npm,
            "maven" => Self::Maven,
            "cargo" => Self::Cargo,
            "gem" => Self::RubyGems,
            "nuget" => Self::NuGet,
            "composer" => Self::Composer,
            _ => return None,
        })
    }

    /// The part of the bucket name before `::` (trivy-db's `vulnerability/const.go`).
    pub(crate) fn bucket_prefix(self) -> &'static str {
        match self {
            Self::Go => "go",
            Self::Pip => "pip",
            Self::Npm => "npm",
            Self::Maven => "maven",
            Self::Cargo => "cargo",
            Self::RubyGems => "rubygems",
            Self::NuGet => "nuget",
            Self::Composer => "composer",
        }
    }

    /// The package name as Trivy joins a package URL's namespace and name
    /// (`trivy/pkg/purl/purl.go` `Package()`): `group:artifact` for Maven, else `ns/name`.
    pub(crate) fn purl_package_name(self, namespace: Option<&str>, name: &str) -> String {
        match (self, namespace) {
            (_, None) => name.to_owned(),
            (Self::Maven, Some(namespace)) => format!("{namespace}:{name}"),
            (_, Some(namespace)) => format!("{namespace}/{name}"),
        }
    }

    /// The keys a package is stored under, so that Trivy's lookup (`NormalizePkgName`
    /// applied to the name a lockfile gives) finds it. Go and NuGet keep their case; PyPI
    /// is lowercased with `_` as `-`, and a name with dots is stored twice, dotted (as
    /// requirements.txt writes it) and with `-` (as poetry.lock writes it).
    pub(crate) fn package_keys(self, name: &str) -> Vec<String> {
        match self {
            Self::Go | Self::NuGet => vec![name.to_owned()],
            Self::Pip => {
                let key = name.to_lowercase().replace('_', "-");
                if key.contains('.') {
                    let dashed = key.replace('.', "-");
                    vec![key, dashed]
                } else {
                    vec![key]
                }
            }
            Self::Npm | Self::Maven | Self::Cargo | Self::RubyGems | Self::Composer => {
                vec![name.to_lowercase()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_as_trivy_looks_them_up() {
        let cases: [(&str, &str, &[&str]); 10] = [
            (
                "Go",
                "github.com/BurntSushi/toml",
                &["github.com/BurntSushi/toml"],
            ),
            ("NuGet", "Newtonsoft.Json", &["Newtonsoft.Json"]),
            ("PyPI", "PyYAML", &["pyyaml"]),
            ("PyPI", "typing_extensions", &["typing-extensions"]),
            ("PyPI", "Zope.Interface", &["zope.interface", "zope-interface"]),
            ("npm", "@Babel/Traverse", &["@babel/traverse"]),
            (
                "Maven",
                "org.apache.logging.log4j:Log4j-Core",
                &["org.apache.logging.log4j:log4j-core"],
            ),
            ("crates.io", "SmallVec", &["smallvec"]),
            ("RubyGems", "Rack", &["rack"]),
            ("Packagist", "Symfony/Http-Kernel", &["symfony/http-kernel"]),
        ];
        for (osv, name, keys) in cases {
            let ecosystem = Ecosystem::from_osv(osv).unwrap();
            assert_eq!(ecosystem.package_keys(name), keys, "{osv} {name}");
        }
        assert_eq!(Ecosystem::from_osv("Debian:12"), None);
        assert_eq!(Ecosystem::from_osv("pypi"), Some(Ecosystem::Pip));
    }

    #[test]
    fn purl_names_join_namespace_and_name_as_trivy_does() {
        let maven = Ecosystem::from_purl_type("maven").unwrap();
        assert_eq!(
            maven.purl_package_name(Some("org.example"), "lib"),
            "org.example:lib"
        );
        let npm = Ecosystem::from_purl_type("npm").unwrap();
        assert_eq!(npm.purl_package_name(Some("@scope"), "x"), "@scope/x");
        assert_eq!(npm.purl_package_name(None, "x"), "x");
        assert_eq!(Ecosystem::from_purl_type("rpm"), None);
    }
}
