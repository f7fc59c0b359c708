//! Region codes: what a messy `country` value in the data means, and sets of regions.
//!
//! Owns the normalisation rules (trim, ASCII-uppercase, aliases, alpha-3 → alpha-2), the built-in
//! groups `EU` and `EEA`, and [`RegionSet`], the bitset that compiled rules test rows against.
//! Everything else sees a region only as a [`Region`] index.

mod iso3166;

use std::sync::OnceLock;

use iso3166::COUNTRIES;

/// A normalised region: `UNKNOWN` or one ISO 3166-1 alpha-2 code (or `XK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(u16);

/// Number of distinct [`Region`] values, `UNKNOWN` included.
pub const REGION_COUNT: usize = COUNTRIES.len() + 1;

impl Region {
    /// Null, empty, non-ASCII or unrecognised input.
    pub const UNKNOWN: Region = Region(0);

    /// Dense index in `0..REGION_COUNT`; 0 is unknown.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn from_index(index: usize) -> Region {
        assert!(index < REGION_COUNT, "region index out of range");
        Region(index as u16)
    }

    pub fn is_unknown(self) -> bool {
        self.0 == 0
    }

    /// The alpha-2 code, or `None` for unknown.
    pub fn code(self) -> Option<&'static str> {
        match self.0 {
            0 => None,
            i => Some(COUNTRIES[i as usize - 1].0),
        }
    }

    /// The code, or `unknown`: the key used in summaries.
    pub fn label(self) -> &'static str {
        self.code().unwrap_or("unknown")
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "unknown",
            i => COUNTRIES[i as usize - 1].2,
        }
    }

    /// Every known region, in code order (unknown excluded).
    pub fn all_known() -> impl Iterator<Item = Region> {
        (1..REGION_COUNT).map(|i| Region(i as u16))
    }
}

fn alpha3_index() -> &'static [([u8; 3], u16)] {
    static INDEX: OnceLock<Vec<([u8; 3], u16)>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut v: Vec<([u8; 3], u16)> = COUNTRIES
            .iter()
            .enumerate()
            .map(|(i, (_, a3, _))| {
                let b = a3.as_bytes();
                ([b[0], b[1], b[2]], i as u16 + 1)
            })
            .collect();
        v.sort_unstable();
        v
    })
}

fn lookup_alpha2(code: [u8; 2]) -> Region {
    COUNTRIES
        .binary_search_by(|(a2, _, _)| a2.as_bytes().cmp(&code[..]))
        .map(|i| Region(i as u16 + 1))
        .unwrap_or(Region::UNKNOWN)
}

/// Normalise a data value: trim, ASCII-uppercase, resolve aliases (`UK`/`XI` → `GB`, `EL` → `GR`,
/// `IC`/`EA` → `ES`) and alpha-3 codes. Anything else — empty, non-ASCII, `EU`, junk — is unknown.
pub fn normalize(value: &str) -> Region {
    let t = value.trim();
    if !t.is_ascii() {
        return Region::UNKNOWN;
    }
    let b = t.as_bytes();
    match b.len() {
        2 => {
            let code = [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()];
            let code = match &code {
                b"UK" | b"XI" => *b"GB",
                b"EL" => *b"GR",
                b"IC" | b"EA" => *b"ES",
                _ => code,
            };
            lookup_alpha2(code)
        }
        3 => {
            let code = [
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
                b[2].to_ascii_uppercase(),
            ];
            let idx = alpha3_index();
            idx.binary_search_by(|(a3, _)| a3.cmp(&code))
                .map(|i| Region(idx[i].1))
                .unwrap_or(Region::UNKNOWN)
        }
        _ => Region::UNKNOWN,
    }
}

/// The 27 EU member states.
pub const EU_MEMBERS: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];
/// Parts of member states that carry their own ISO code yet are inside the EU.
pub const EU_OWN_CODE_TERRITORIES: [&str; 7] = ["AX", "GF", "GP", "MQ", "RE", "YT", "MF"];
/// EEA members outside the EU.
pub const EEA_NON_EU: [&str; 3] = ["IS", "LI", "NO"];

/// A set of regions, `UNKNOWN` included as a possible member.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionSet([u64; REGION_COUNT.div_ceil(64)]);

impl RegionSet {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, r: Region) {
        self.0[r.index() / 64] |= 1 << (r.index() % 64);
    }

    #[inline]
    pub fn contains(&self, r: Region) -> bool {
        self.0[r.index() / 64] & (1 << (r.index() % 64)) != 0
    }

    pub fn union_with(&mut self, other: &RegionSet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    pub fn from_codes(codes: &[&str]) -> Self {
        let mut s = Self::empty();
        for c in codes {
            let r = normalize(c);
            assert!(!r.is_unknown(), "built-in code {c} is not in the ISO table");
            s.insert(r);
        }
        s
    }

    /// Members in code order, `UNKNOWN` first when present.
    pub fn iter(&self) -> impl Iterator<Item = Region> + '_ {
        (0..REGION_COUNT)
            .map(|i| Region(i as u16))
            .filter(|r| self.contains(*r))
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for RegionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|r| r.label()))
            .finish()
    }
}

/// The built-in `EU` group.
pub fn eu() -> RegionSet {
    let mut s = RegionSet::from_codes(&EU_MEMBERS);
    s.union_with(&RegionSet::from_codes(&EU_OWN_CODE_TERRITORIES));
    s
}

/// The built-in `EEA` group: EU plus IS, LI, NO.
pub fn eea() -> RegionSet {
    let mut s = eu();
    s.union_with(&RegionSet::from_codes(&EEA_NON_EU));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_249_iso_codes_plus_kosovo() {
        assert_eq!(COUNTRIES.len(), 250);
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(Region::all_known().count(), 250);
    }

    #[test]
    fn every_alpha2_and_alpha3_round_trips() {
        for (a2, a3, _) in COUNTRIES.iter() {
            assert_eq!(normalize(a2).code(), Some(*a2));
            assert_eq!(normalize(a3).code(), Some(*a2), "{a3}");
            assert_eq!(normalize(&a3.to_lowercase()).code(), Some(*a2));
        }
    }

    #[test]
    fn aliases_and_messy_values() {
        for (raw, want) in [
            ("gb", Some("GB")),
            (" uk ", Some("GB")),
            ("Uk", Some("GB")),
            ("XI", Some("GB")),
            ("EL", Some("GR")),
            ("IC", Some("ES")),
            ("EA", Some("ES")),
            ("gbr", Some("GB")),
            ("DEU", Some("DE")),
            ("\tfr\n", Some("FR")),
            ("NO", Some("NO")),
            ("XK", Some("XK")),
            ("XKX", Some("XK")),
            ("EU", None),
            ("EEA", None),
            ("", None),
            ("   ", None),
            ("G B", None),
            ("ÜK", None),
            ("zz", None),
            ("XX", None),
            ("United Kingdom", None),
            ("GBRR", None),
            ("1", None),
            ("G", None),
        ] {
            assert_eq!(normalize(raw).code(), want, "{raw:?}");
        }
    }

    #[test]
    fn eu_and_eea_membership() {
        let eu = eu();
        assert_eq!(eu.len(), 34);
        for c in EU_MEMBERS.iter().chain(EU_OWN_CODE_TERRITORIES.iter()) {
            assert!(eu.contains(normalize(c)), "{c}");
        }
        // Réunion is an EU row; the UK, Switzerland and Norway are not.
        assert!(eu.contains(normalize("REU")));
        for c in ["GB", "CH", "NO", "IS", "LI", "US", "GL", "FO", "NC", "PM"] {
            assert!(!eu.contains(normalize(c)), "{c}");
        }
        assert!(!eu.contains(Region::UNKNOWN));
        let eea = eea();
        assert_eq!(eea.len(), 37);
        for c in ["IS", "LI", "NO", "DE", "RE", "AX"] {
            assert!(eea.contains(normalize(c)), "{c}");
        }
        for c in ["GB", "CH", "TR"] {
            assert!(!eea.contains(normalize(c)), "{c}");
        }
    }
}
