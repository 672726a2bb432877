//! `--user` and `--groups`: names resolved by reading the image's /etc/passwd and /etc/group
//! directly. The binary is static, so there is no NSS; these files are the whole truth.

use std::io::Read;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";
/// An account database larger than this is refused rather than read.
const MAX_DB_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// `name:password:uid:gid:gecos:home:shell`; malformed lines and comments are skipped, as the
/// C library does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            let _password = f.next()?;
            let uid = parse_id(f.next()?)?;
            let gid = parse_id(f.next()?)?;
            Some(PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

/// `name:password:gid:member,member`.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            let _password = f.next()?;
            let gid = parse_id(f.next()?)?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect();
            Some(GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// A uid or gid: a decimal number below 2^32 - 1 (which means "no id" to the kernel).
pub fn parse_id(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

/// Who the app runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// uid and gid, when `--user` was given.
    pub ids: Option<(u32, u32)>,
    /// Supplementary groups, when they are to be set (`--groups`, or implied by `--user`).
    pub groups: Option<Vec<u32>>,
}

/// The account databases, read at most once and only when a name must be resolved.
pub struct Databases {
    root: std::path::PathBuf,
    passwd: Option<Result<Vec<PasswdEntry>, String>>,
    group: Option<Result<Vec<GroupEntry>, String>>,
}

impl Databases {
    pub fn system() -> Self {
        Self::at("/")
    }

    pub fn at(root: impl Into<std::path::PathBuf>) -> Self {
        Databases {
            root: root.into(),
            passwd: None,
            group: None,
        }
    }

    fn read(&self, path: &str) -> Result<String, String> {
        let full = self.root.join(path.trim_start_matches('/'));
        let file = std::fs::File::open(&full).map_err(|e| format!("cannot open {path}: {}", crate::describe_io(&e)))?;
        let mut text = String::new();
        file.take(MAX_DB_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {path}: {}", crate::describe_io(&e)))?;
        if text.len() as u64 > MAX_DB_BYTES {
            return Err(format!("{path} is larger than {MAX_DB_BYTES} bytes"));
        }
        Ok(text)
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry], String> {
        if self.passwd.is_none() {
            self.passwd = Some(self.read(PASSWD).map(|t| parse_passwd(&t)));
        }
        match self.passwd.as_ref() {
            Some(Ok(entries)) => Ok(entries),
            Some(Err(e)) => Err(e.clone()),
            None => unreachable!("filled above"),
        }
    }

    fn group(&mut self) -> Result<&[GroupEntry], String> {
        if self.group.is_none() {
            self.group = Some(self.read(GROUP).map(|t| parse_group(&t)));
        }
        match self.group.as_ref() {
            Some(Ok(entries)) => Ok(entries),
            Some(Err(e)) => Err(e.clone()),
            None => unreachable!("filled above"),
        }
    }

    fn group_id(&mut self, text: &str) -> Result<u32, String> {
        let text = text.trim();
        if let Some(gid) = parse_id(text) {
            return Ok(gid);
        }
        if text.is_empty() {
            return Err("empty group name".into());
        }
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(format!("{text:?} is not a valid gid (0 to 4294967294)"));
        }
        let groups = self.group()?;
        groups
            .iter()
            .find(|g| g.name == text)
            .map(|g| g.gid)
            .ok_or_else(|| format!("unknown group {text:?} (not in {GROUP})"))
    }
}

/// Resolves `--user USER[:GROUP]` and `--groups`. Errors are the cause only; the caller names
/// the option.
pub fn resolve(
    user: Option<&str>,
    groups: Option<&[String]>,
    db: &mut Databases,
) -> Result<Identity, (&'static str, String)> {
    let mut name = None;
    let ids = match user {
        None => None,
        Some(spec) => {
            let (user_part, group_part) = match spec.split_once(':') {
                Some((u, g)) => (u.trim(), Some(g)),
                None => (spec.trim(), None),
            };
            if user_part.is_empty() {
                return Err(("user", "empty user name".into()));
            }
            let (uid, passwd_gid) = if let Some(uid) = parse_id(user_part) {
                // A number: its passwd entry, if there is one, gives the name and group.
                let entry = db.passwd().ok().and_then(|p| p.iter().find(|e| e.uid == uid).cloned());
                if let Some(e) = &entry {
                    name = Some(e.name.clone());
                }
                (uid, entry.map(|e| e.gid))
            } else if user_part.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return Err(("user", format!("{user_part:?} is not a valid uid (0 to 4294967294)")));
            } else {
                let passwd = db.passwd().map_err(|e| ("user", e))?;
                let entry = passwd
                    .iter()
                    .find(|e| e.name == user_part)
                    .ok_or_else(|| ("user", format!("unknown user {user_part:?} (not in {PASSWD})")))?;
                name = Some(entry.name.clone());
                (entry.uid, Some(entry.gid))
            };
            let gid = match group_part {
                Some(g) => db.group_id(g).map_err(|e| ("user", e))?,
                None => passwd_gid.ok_or_else(|| {
                    (
                        "user",
                        format!("uid {uid} is not in {PASSWD}, so its group is unknown: give it as --user {uid}:GID"),
                    )
                })?,
            };
            Some((uid, gid))
        }
    };
    let groups = match groups {
        Some(list) => {
            let mut gids = Vec::new();
            for g in list {
                let gid = db.group_id(g).map_err(|e| ("groups", e))?;
                if !gids.contains(&gid) {
                    gids.push(gid);
                }
            }
            Some(gids)
        }
        // A new user gets exactly the groups /etc/group gives its name (none without a name),
        // never the shim's own.
        None if ids.is_some() => match &name {
            Some(name) => match db.group() {
                Ok(all) => Some(
                    all.iter()
                        .filter(|g| g.members.iter().any(|m| m == name))
                        .map(|g| g.gid)
                        .fold(Vec::new(), |mut v, gid| {
                            if !v.contains(&gid) {
                                v.push(gid);
                            }
                            v
                        }),
                ),
                // No /etc/group at all: no supplementary groups.
                Err(_) => Some(Vec::new()),
            },
            None => Some(Vec::new()),
        },
        None => None,
    };
    Ok(Identity { ids, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\nnobody:x:65534:65534::/:/sbin/nologin\napp:x:1000:1001::/home/app:/bin/false\n";
    const GROUP_TEXT: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1001:\nwheel:x:10:root,app\naudio:x:29: app , other\nbad:x:notanumber:app\n";

    fn db() -> (Databases, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "husk-user-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), PASSWD_TEXT).unwrap();
        std::fs::write(dir.join("etc/group"), GROUP_TEXT).unwrap();
        (Databases::at(&dir), dir)
    }

    #[test]
    fn parses_passwd_and_group() {
        let p = parse_passwd(PASSWD_TEXT);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[1],
            PasswdEntry {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534
            }
        );
        let g = parse_group(GROUP_TEXT);
        assert_eq!(g.len(), 5, "the line with a bad gid is skipped");
        assert_eq!(g[4].members, vec!["app".to_string(), "other".to_string()]);
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("4294967294"), Some(4294967294));
        assert_eq!(parse_id("4294967295"), None);
        assert_eq!(parse_id("-1"), None);
        assert_eq!(parse_id("+5"), None);
        assert_eq!(parse_id(""), None);
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let (mut db, dir) = db();
        let id = resolve(Some("app"), None, &mut db).unwrap();
        assert_eq!(id.ids, Some((1000, 1001)));
        assert_eq!(id.groups, Some(vec![10, 29]));
        let id = resolve(Some("65534:65534"), None, &mut db).unwrap();
        assert_eq!(id.ids, Some((65534, 65534)));
        assert_eq!(id.groups, Some(vec![]));
        let id = resolve(Some("nobody:wheel"), Some(&["audio".into(), "7".into()]), &mut db).unwrap();
        assert_eq!(id.ids, Some((65534, 10)));
        assert_eq!(id.groups, Some(vec![29, 7]));
        let id = resolve(None, Some(&["wheel".into()]), &mut db).unwrap();
        assert_eq!(
            id,
            Identity {
                ids: None,
                groups: Some(vec![10])
            }
        );
        assert_eq!(
            resolve(None, None, &mut db).unwrap(),
            Identity {
                ids: None,
                groups: None
            }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_resolve() {
        let (mut db, dir) = db();
        let err = |u: Option<&str>, g: Option<&[String]>, db: &mut Databases| resolve(u, g, db).unwrap_err();
        assert_eq!(
            err(Some("bob"), None, &mut db),
            ("user", "unknown user \"bob\" (not in /etc/passwd)".into())
        );
        assert!(err(Some("app:nope"), None, &mut db)
            .1
            .contains("unknown group \"nope\""));
        assert!(err(Some("4242"), None, &mut db).1.contains("--user 4242:GID"));
        assert!(err(Some("-1"), None, &mut db).1.contains("not a valid uid"));
        assert!(err(Some(":0"), None, &mut db).1.contains("empty user name"));
        assert_eq!(err(None, Some(&["nope".into()]), &mut db).0, "groups");
        std::fs::remove_dir_all(dir).unwrap();
        let mut empty = Databases::at("/nonexistent-husk");
        assert!(resolve(Some("app"), None, &mut empty)
            .unwrap_err()
            .1
            .contains("cannot open /etc/passwd"));
        assert_eq!(resolve(Some("5:5"), None, &mut empty).unwrap().ids, Some((5, 5)));
    }
}
