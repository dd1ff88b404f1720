//! Turning pages of a delimited listing into directory entries.
//!
//! Two rules of the namespace live here. Keys that cannot be a path component (empty,
//! `.`/`..`, over 255 bytes) are skipped with one warning. When both `x` and `x/...` exist,
//! the directory wins: the file `x` sorts before the prefix `x/` but possibly pages
//! earlier, so a file is held back until the listing has moved past where `x/` would be.

use std::collections::BTreeMap;

use tracing::warn;

use crate::store::{ListPage, ObjectSummary};

/// Longest name a Linux path component may have.
pub const NAME_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedKind {
    File(ObjectSummary),
    Directory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    pub name: String,
    pub kind: ListedKind,
}

/// Why a name cannot be shown, or `None` when it can.
pub fn invalid_name_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it has an empty path component")
    } else if name == "." || name == ".." {
        Some("it has a '.' or '..' path component")
    } else if name.len() > NAME_MAX {
        Some("a path component is longer than 255 bytes")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    }
}

/// Merges the pages of one directory's listing into entries, in listing order.
pub struct EntryMerger {
    prefix: String,
    /// Files not yet known to be free of a same-named directory, by full key.
    held_files: BTreeMap<String, ObjectSummary>,
}

impl EntryMerger {
    pub fn new(prefix: &str) -> EntryMerger {
        EntryMerger { prefix: prefix.to_string(), held_files: BTreeMap::new() }
    }

    /// Feeds one page; returns the entries that are settled. After the last page
    /// (`page.next` is `None`) every held file is settled.
    pub fn push(&mut self, page: ListPage) -> Vec<ListedEntry> {
        let mut out = Vec::new();
        let frontier = page.objects.iter().map(|o| o.key.clone()).chain(page.common_prefixes.iter().cloned()).max();
        for object in page.objects {
            let Some(name) = object.key.strip_prefix(&self.prefix) else { continue };
            if name.is_empty() {
                continue; // the directory's own marker object
            }
            if let Some(reason) = invalid_name_reason(name) {
                warn!(key = %object.key, "skipping key: {reason}");
                continue;
            }
            self.held_files.insert(object.key.clone(), object);
        }
        for prefix in page.common_prefixes {
            let Some(name) = prefix.strip_prefix(&self.prefix).and_then(|n| n.strip_suffix('/')) else {
                continue;
            };
            if let Some(reason) = invalid_name_reason(name) {
                warn!(prefix = %prefix, "skipping keys under prefix: {reason}");
                continue;
            }
            let file_key = &prefix[..prefix.len() - 1];
            if self.held_files.remove(file_key).is_some() {
                warn!(key = %file_key, "a directory of the same name hides this object; it is reachable only by its key");
            }
            out.push(ListedEntry { name: name.to_string(), kind: ListedKind::Directory });
        }
        let settled: Vec<String> = match (&page.next, frontier) {
            (Some(_), Some(frontier)) => {
                self.held_files.keys().filter(|k| format!("{k}/") <= frontier).cloned().collect()
            }
            (Some(_), None) => Vec::new(),
            (None, _) => self.held_files.keys().cloned().collect(),
        };
        for key in settled {
            if let Some(object) = self.held_files.remove(&key) {
                let name = key[self.prefix.len()..].to_string();
                out.push(ListedEntry { name, kind: ListedKind::File(object) });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ObjectSummary {
        ObjectSummary { key: key.into(), size: 1, last_modified: None, etag: None }
    }

    fn page(objects: &[&str], prefixes: &[&str], more: bool) -> ListPage {
        ListPage {
            objects: objects.iter().map(|k| obj(k)).collect(),
            common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            next: more.then(|| "next".to_string()),
        }
    }

    fn names(entries: &[ListedEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e.kind {
                ListedKind::File(_) => e.name.clone(),
                ListedKind::Directory => format!("{}/", e.name),
            })
            .collect()
    }

    #[test]
    fn marker_is_skipped_and_files_and_dirs_are_listed() {
        let mut m = EntryMerger::new("d/");
        let out = m.push(page(&["d/", "d/a", "d/b"], &["d/c/"], false));
        assert_eq!(names(&out), ["c/", "a", "b"]);
    }

    #[test]
    fn directory_wins_over_file_across_pages() {
        let mut m = EntryMerger::new("");
        // "x" and "x.txt" come first; "x/" only on the next page.
        let first = m.push(page(&["a", "x", "x.txt"], &[], true));
        assert_eq!(names(&first), ["a"], "x and x.txt must wait: x/ could still come");
        let second = m.push(page(&["y"], &["x/"], false));
        assert_eq!(names(&second), ["x/", "x.txt", "y"]);
    }

    #[test]
    fn held_file_is_released_once_the_listing_passes_its_directory_position() {
        let mut m = EntryMerger::new("");
        assert!(m.push(page(&["x"], &[], true)).is_empty());
        let out = m.push(page(&["z"], &[], true));
        assert_eq!(names(&out), ["x"], "z/ could still come on the next page");
        assert_eq!(names(&m.push(page(&[], &[], false))), ["z"]);
    }

    #[test]
    fn invalid_names_are_skipped() {
        let long = format!("p/{}", "n".repeat(256));
        let mut m = EntryMerger::new("p/");
        let out = m.push(page(&["p/ok", "p/.", "p/..", &long], &["p//", "p/../", "p/sub/"], false));
        assert_eq!(names(&out), ["sub/", "ok"]);
    }
}
