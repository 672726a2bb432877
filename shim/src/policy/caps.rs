//! `--cap-keep`: which capabilities the app keeps. Everything else leaves all five sets.

use std::str::FromStr;

use caps::{CapSet, Capability};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapKeep {
    /// `all`: the runtime's sets are left as they are.
    All,
    /// Exactly these (possibly none).
    Only(Vec<Capability>),
}

/// `NET_BIND_SERVICE`, `cap_net_bind_service`, `CAP_NET_BIND_SERVICE`.
pub fn parse_cap(name: &str) -> Result<Capability, String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return Err("empty capability name".into());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full).map_err(|_| format!("unknown capability {name:?}"))
}

pub fn parse_keep(list: &[String]) -> Result<CapKeep, String> {
    let names: Vec<&str> = list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        if names.len() > 1 {
            return Err("\"all\" cannot be combined with capability names".into());
        }
        return Ok(CapKeep::All);
    }
    let mut kept = Vec::new();
    for name in names {
        let cap = parse_cap(name)?;
        if !kept.contains(&cap) {
            kept.push(cap);
        }
    }
    kept.sort_by_key(|c| c.index());
    Ok(CapKeep::Only(kept))
}

/// What the child does with capabilities, prepared before fork.
#[derive(Clone, Debug)]
pub struct CapPlan {
    pub keep: CapKeep,
    /// Kept capabilities as the kernel's 64-bit mask.
    pub mask: u64,
    /// Capabilities to drop from the bounding set (every supported one not kept), empty when the
    /// bounding set is left alone.
    pub bounding_drop: Vec<u32>,
}

impl CapPlan {
    pub fn prepare(keep: CapKeep) -> Result<CapPlan, String> {
        let CapKeep::Only(kept) = &keep else {
            return Ok(CapPlan {
                keep,
                mask: 0,
                bounding_drop: Vec::new(),
            });
        };
        let supported = caps::runtime::thread_all_supported();
        let permitted =
            caps::read(None, CapSet::Permitted).map_err(|e| format!("cannot read the shim's capabilities: {e}"))?;
        let bounding = caps::read(None, CapSet::Bounding).map_err(|e| format!("cannot read the bounding set: {e}"))?;
        for cap in kept {
            if !supported.contains(cap) {
                return Err(format!("{cap} is not supported by this kernel"));
            }
            if !permitted.contains(cap) || !bounding.contains(cap) {
                return Err(format!(
                    "{cap} is not in the shim's permitted set, so the app cannot keep it (grant it to the container)"
                ));
            }
        }
        let mask = kept.iter().fold(0u64, |m, c| m | c.bitmask());
        let mut bounding_drop: Vec<u32> = supported
            .iter()
            .filter(|c| !kept.contains(c))
            .map(|c| u32::from(c.index()))
            .collect();
        bounding_drop.sort_unstable();
        Ok(CapPlan {
            keep,
            mask,
            bounding_drop,
        })
    }

    pub fn keeps(&self, cap: Capability) -> bool {
        match &self.keep {
            CapKeep::All => caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false),
            CapKeep::Only(kept) => kept.contains(&cap),
        }
    }

    pub fn names(&self) -> Vec<String> {
        match &self.keep {
            CapKeep::All => vec!["all".into()],
            CapKeep::Only(kept) => kept.iter().map(|c| c.to_string()).collect(),
        }
    }

    pub fn kept_indices(&self) -> impl Iterator<Item = u32> + '_ {
        (0..64u32).filter(move |i| self.mask & (1u64 << i) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_cap("NET_BIND_SERVICE"), Ok(Capability::CAP_NET_BIND_SERVICE));
        assert_eq!(parse_cap("cap_net_bind_service"), Ok(Capability::CAP_NET_BIND_SERVICE));
        assert_eq!(parse_cap(" CAP_SYS_ADMIN "), Ok(Capability::CAP_SYS_ADMIN));
        assert!(parse_cap("NET_BIND").is_err());
        assert!(parse_cap("").is_err());
        assert!(parse_cap("CAP_").is_err());
    }

    #[test]
    fn keep_lists() {
        assert_eq!(parse_keep(&["all".into()]), Ok(CapKeep::All));
        assert_eq!(parse_keep(&["ALL".into()]), Ok(CapKeep::All));
        assert_eq!(parse_keep(&[]), Ok(CapKeep::Only(vec![])));
        assert!(parse_keep(&["all".into(), "CHOWN".into()]).is_err());
        assert_eq!(
            parse_keep(&["KILL".into(), "chown".into(), "CAP_KILL".into()]),
            Ok(CapKeep::Only(vec![Capability::CAP_CHOWN, Capability::CAP_KILL]))
        );
        assert!(parse_keep(&["CHOWN".into(), "FLY".into()])
            .unwrap_err()
            .contains("\"FLY\""));
    }
}
