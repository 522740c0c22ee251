//! Triton's restricted APIs: `--http-restricted-api API[,API...]:KEY=VALUE` makes every
//! request in those API groups carry the header `KEY: VALUE` (gRPC: the metadata entry),
//! so deployments that rely on Triton's flags keep working.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::routes::Group;

/// The header each restricted group needs.
#[derive(Debug, Clone, Default)]
pub struct Restrictions {
    by_group: BTreeMap<Group, (String, String)>,
}

impl Restrictions {
    /// No restrictions.
    pub const EMPTY: Restrictions = Restrictions {
        by_group: BTreeMap::new(),
    };

    /// Parses the flag's values (`health,metadata:key=value`, one per flag).
    ///
    /// # Errors
    /// An unknown API group, a missing `:` or `=`, an invalid header name, or a group
    /// restricted twice.
    pub fn parse(specs: &[String]) -> Result<Restrictions, String> {
        let mut by_group = BTreeMap::new();
        for spec in specs {
            let (apis, kv) = spec.split_once(':').ok_or_else(|| {
                format!("restricted API '{spec}': expected API[,API...]:KEY=VALUE")
            })?;
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| format!("restricted API '{spec}': expected KEY=VALUE after ':'"))?;
            let key = key.trim().to_ascii_lowercase();
            if axum::http::HeaderName::from_bytes(key.as_bytes()).is_err() {
                return Err(format!(
                    "restricted API '{spec}': '{key}' is not a valid header name"
                ));
            }
            for api in apis.split(',').map(str::trim) {
                let group = Group::ALL
                    .into_iter()
                    .find(|g| g.as_str() == api)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
                        format!(
                            "restricted API '{spec}': unknown API '{api}'; expected one of {}",
                            names.join(", ")
                        )
                    })?;
                if by_group
                    .insert(group, (key.clone(), value.to_string()))
                    .is_some()
                {
                    return Err(format!(
                        "restricted API '{api}' is given twice; restrict each API once"
                    ));
                }
            }
        }
        Ok(Restrictions { by_group })
    }

    /// True when `group` is restricted.
    pub fn restricts(&self, group: Group) -> bool {
        self.by_group.contains_key(&group)
    }

    /// True when no group is restricted.
    pub fn is_empty(&self) -> bool {
        self.by_group.is_empty()
    }

    /// `Err(header name)` when `group` is restricted and `headers` lack its key and value.
    pub fn check(&self, group: Option<Group>, headers: &HeaderMap) -> Result<(), String> {
        let Some((key, value)) = group.and_then(|g| self.by_group.get(&g)) else {
            return Ok(());
        };
        let ok = headers
            .get(key.as_str())
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(value.as_bytes())));
        if ok { Ok(()) } else { Err(key.clone()) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        let r =
            Restrictions::parse(&["model-repository,statistics:Admin-Key=s3cret".into()]).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(
            r.check(Some(Group::ModelRepository), &h),
            Err("admin-key".into())
        );
        assert_eq!(r.check(Some(Group::Inference), &h), Ok(()));
        assert_eq!(r.check(None, &h), Ok(()));
        h.insert("admin-key", "wrong".parse().unwrap());
        assert!(r.check(Some(Group::Statistics), &h).is_err());
        h.insert("admin-key", "s3cret".parse().unwrap());
        assert_eq!(r.check(Some(Group::Statistics), &h), Ok(()));
        assert!(
            Restrictions::parse(&["bogus:k=v".into()])
                .unwrap_err()
                .contains("unknown API")
        );
        assert!(Restrictions::parse(&["health".into()]).is_err());
        assert!(Restrictions::parse(&["health:k".into()]).is_err());
        assert!(
            Restrictions::parse(&["health:k=v".into(), "health:j=w".into()])
                .unwrap_err()
                .contains("twice")
        );
    }
}
