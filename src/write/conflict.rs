//! Uploads that never overwrite a change made elsewhere. Each upload names the version it
//! replaces (or that there is none); a store that refuses it holds another client's
//! write, and the data written here is kept under a conflict name next to the file.
//! Refusals that are no conflict are settled here: the object deleted elsewhere (the file
//! is made again) and this mount's own write whose reply was lost (its retry refused).

use std::future::Future;
use std::time::SystemTime;

use crate::store::{same_etag, ErrorKind, ObjectError, ObjectStore, Precondition};

/// The name data refused by a conflict is stored under: the key with
/// `.conflict-<UTC time>-<host>` appended, so it sorts next to the file.
pub fn conflict_key(key: &str, at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let millis = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_millis());
    let stamp = format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{millis:03}Z", rest / 3600, rest / 60 % 60, rest % 60);
    format!("{key}.conflict-{stamp}-{}", hostname())
}

/// Sends a conditional write, settling the refusals that are not conflicts; `ours` is the
/// ETag the write gives the object, when it can be told in advance.
pub async fn write_if<F, Fut>(
    client: &dyn ObjectStore,
    key: &str,
    condition: &Precondition,
    ours: Option<&str>,
    send: F,
) -> Result<Option<String>, ObjectError>
where
    F: Fn(Precondition) -> Fut,
    Fut: Future<Output = Result<Option<String>, ObjectError>>,
{
    let mut condition = condition.clone();
    loop {
        let err = match send(condition.clone()).await {
            Err(e) => e,
            ok => return ok,
        };
        let lost_reply = err.kind == ErrorKind::PreconditionFailed || err.code.as_deref() == Some("NoSuchUpload");
        if lost_reply {
            if let Some(ours) = ours {
                if let Ok(info) = client.head_object(key).await {
                    if info.etag.as_deref().is_some_and(|e| same_etag(e, ours)) {
                        return Ok(info.etag);
                    }
                }
            }
            return Err(err);
        }
        match condition {
            // Deleted elsewhere: a delete is no data to lose, the file is made again.
            Precondition::Matches(_) if err.kind == ErrorKind::NotFound => condition = Precondition::Absent,
            _ => return Err(err),
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned()
    } else {
        String::new()
    };
    let name: String = name.chars().filter(|c| c.is_alphanumeric() || "-_.".contains(*c)).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conflict_names_carry_the_utc_time_and_host() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_147_100); // 2026-12-01 17:45:00
        let name = conflict_key("logs/app.log", at);
        assert!(name.starts_with("logs/app.log.conflict-20261201T174500.000Z-"), "{name}");
        assert!(!name.ends_with('-'));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
