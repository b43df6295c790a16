//! `Accept` header negotiation with q-values (RFC 9110 §12.5.1).
//!
//! The original example looked only at the first entry and crashed when the
//! header was missing; here the whole header is read, each offered type gets
//! the q-value of the most specific range that matches it, and ties go to the
//! server's order of preference.

/// A representation the origin can produce for a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// `application/json`: the board as JSON.
    Json,
    /// `text/event-stream`: a GRIP-held SSE stream.
    EventStream,
    /// `text/html`: the page for a browser.
    Html,
}

impl Representation {
    fn media_type(self) -> (&'static str, &'static str) {
        match self {
            Representation::Json => ("application", "json"),
            Representation::EventStream => ("text", "event-stream"),
            Representation::Html => ("text", "html"),
        }
    }
}

/// One parsed media range: type, subtype and q in thousandths.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    kind: String,
    subtype: String,
    q: u16,
}

impl Range {
    /// 2 for an exact match, 1 for `type/*`, 0 for `*/*`; `None` if the
    /// range does not match.
    fn specificity(&self, kind: &str, subtype: &str) -> Option<u8> {
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", "*") => Some(0),
            (k, "*") if k.eq_ignore_ascii_case(kind) => Some(1),
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => Some(2),
            _ => None,
        }
    }
}

/// Parses a q-value: `0`, `1`, or up to three decimals. Anything else makes
/// the whole range invalid, and invalid ranges are ignored.
fn parse_q(raw: &str) -> Option<u16> {
    let raw = raw.trim();
    let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

fn parse_range(raw: &str) -> Option<Range> {
    let mut parts = raw.split(';');
    let media = parts.next()?.trim();
    let (kind, subtype) = media.split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    if !token(kind) || !token(subtype) || (kind == "*" && subtype != "*") {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(value)?;
            }
        }
    }
    Some(Range {
        kind: kind.to_owned(),
        subtype: subtype.to_owned(),
        q,
    })
}

/// Picks what to send for `accept` among `offered` (in order of the server's
/// preference). A missing or wholly unparseable header accepts anything, so
/// the first offer wins. `None` means nothing offered is acceptable (406).
pub fn negotiate(accept: Option<&str>, offered: &[Representation]) -> Option<Representation> {
    let ranges: Vec<Range> = accept
        .map(|h| h.split(',').filter_map(parse_range).collect())
        .unwrap_or_default();
    if ranges.is_empty() {
        return offered.first().copied();
    }
    let mut best: Option<(u16, Representation)> = None;
    for &rep in offered {
        let (kind, subtype) = rep.media_type();
        let q = ranges
            .iter()
            .filter_map(|r| r.specificity(kind, subtype).map(|s| (s, r.q)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, q)| q)
            .unwrap_or(0);
        if q > 0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, rep));
        }
    }
    best.map(|(_, rep)| rep)
}

#[cfg(test)]
mod tests {
    use super::Representation::*;
    use super::*;
    use proptest::prelude::*;

    const OFFERS: &[Representation] = &[Json, EventStream];

    fn pick(accept: &str) -> Option<Representation> {
        negotiate(Some(accept), OFFERS)
    }

    #[test]
    fn missing_or_garbage_header_gets_json() {
        assert_eq!(negotiate(None, OFFERS), Some(Json));
        assert_eq!(pick(""), Some(Json));
        assert_eq!(pick(";;;,,,"), Some(Json));
    }

    #[test]
    fn event_stream_anywhere_in_the_list() {
        assert_eq!(pick("text/event-stream"), Some(EventStream));
        assert_eq!(pick("text/html, text/event-stream"), Some(EventStream));
        assert_eq!(
            pick("application/json;q=0.5, text/event-stream"),
            Some(EventStream)
        );
        assert_eq!(pick("TEXT/Event-Stream"), Some(EventStream));
    }

    #[test]
    fn q_values_decide() {
        assert_eq!(
            pick("text/event-stream;q=0.4, application/json;q=0.5"),
            Some(Json)
        );
        assert_eq!(
            pick("text/event-stream;q=0.9, */*;q=0.1"),
            Some(EventStream)
        );
        assert_eq!(pick("*/*"), Some(Json));
        assert_eq!(pick("text/*"), Some(EventStream));
        assert_eq!(pick("text/event-stream;q=0, */*"), Some(Json));
        assert_eq!(pick("application/json;q=0, text/event-stream;q=0"), None);
        assert_eq!(pick("image/png"), None);
    }

    #[test]
    fn most_specific_range_wins() {
        // */* at 1 but the exact type is refused.
        assert_eq!(pick("*/*, application/json;q=0"), Some(EventStream));
    }

    #[test]
    fn bad_q_invalidates_only_that_range() {
        assert_eq!(
            pick("text/event-stream;q=2, application/json;q=0.1"),
            Some(Json)
        );
        assert_eq!(pick("text/event-stream;q=abc"), Some(Json));
    }

    #[test]
    fn q_parsing() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("-1"), None);
    }

    proptest! {
        #[test]
        fn never_panics(header in ".{0,200}") {
            let _ = pick(&header);
        }

        #[test]
        fn explicit_event_stream_at_top_q_is_chosen(other in "[a-z]{1,8}/[a-z]{1,8}", q in 0u16..1000) {
            let header = format!("{other};q=0.{q:03}, text/event-stream");
            prop_assume!(other != "application/json");
            prop_assert_eq!(pick(&header), Some(EventStream));
        }
    }
}
