//! Language codes: ISO 639-1 (two lowercase letters), optionally with a region
//! (`en-GB`, `es-419`). The table comes from the iso-codes project's ISO 639-2 list.

use super::suggest;

/// Every ISO 639-1 code with its English name, sorted by code.
const LANGUAGES: &[(&str, &str)] = &[
    ("aa", "Afar"),
    ("ab", "Abkhazian"),
    ("ae", "Avestan"),
    ("af", "Afrikaans"),
    ("ak", "Akan"),
    ("am", "Amharic"),
    ("an", "Aragonese"),
    ("ar", "Arabic"),
    ("as", "Assamese"),
    ("av", "Avaric"),
    ("ay", "Aymara"),
    ("az", "Azerbaijani"),
    ("ba", "Bashkir"),
    ("be", "Belarusian"),
    ("bg", "Bulgarian"),
    ("bh", "Bihari languages"),
    ("bi", "Bislama"),
    ("bm", "Bambara"),
    ("bn", "Bengali"),
    ("bo", "Tibetan"),
    ("br", "Breton"),
    ("bs", "Bosnian"),
    ("ca", "Catalan"),
    ("ce", "Chechen"),
    ("ch", "Chamorro"),
    ("co", "Corsican"),
    ("cr", "Cree"),
    ("cs", "Czech"),
    ("cu", "Church Slavic"),
    ("cv", "Chuvash"),
    ("cy", "Welsh"),
    ("da", "Danish"),
    ("de", "German"),
    ("dv", "Divehi"),
    ("dz", "Dzongkha"),
    ("ee", "Ewe"),
    ("el", "Greek, Modern (1453-)"),
    ("en", "English"),
    ("eo", "Esperanto"),
    ("es", "Spanish"),
    ("et", "Estonian"),
    ("eu", "Basque"),
    ("fa", "Persian"),
    ("ff", "Fulah"),
    ("fi", "Finnish"),
    ("fj", "Fijian"),
    ("fo", "Faroese"),
    ("fr", "French"),
    ("fy", "Western Frisian"),
    ("ga", "Irish"),
    ("gd", "Gaelic"),
    ("gl", "Galician"),
    ("gn", "Guarani"),
    ("gu", "Gujarati"),
    ("gv", "Manx"),
    ("ha", "Hausa"),
    ("he", "Hebrew"),
    ("hi", "Hindi"),
    ("ho", "Hiri Motu"),
    ("hr", "Croatian"),
    ("ht", "Haitian"),
    ("hu", "Hungarian"),
    ("hy", "Armenian"),
    ("hz", "Herero"),
    (
        "ia",
        "Interlingua (International Auxiliary Language Association)",
    ),
    ("id", "Indonesian"),
    ("ie", "Interlingue"),
    ("ig", "Igbo"),
    ("ii", "Sichuan Yi"),
    ("ik", "Inupiaq"),
    ("io", "Ido"),
    ("is", "Icelandic"),
    ("it", "Italian"),
    ("iu", "Inuktitut"),
    ("ja", "Japanese"),
    ("jv", "Javanese"),
    ("ka", "Georgian"),
    ("kg", "Kongo"),
    ("ki", "Kikuyu"),
    ("kj", "Kuanyama"),
    ("kk", "Kazakh"),
    ("kl", "Kalaallisut"),
    ("km", "Central Khmer"),
    ("kn", "Kannada"),
    ("ko", "Korean"),
    ("kr", "Kanuri"),
    ("ks", "Kashmiri"),
    ("ku", "Kurdish"),
    ("kv", "Komi"),
    ("kw", "Cornish"),
    ("ky", "Kirghiz"),
    ("la", "Latin"),
    ("lb", "Luxembourgish"),
    ("lg", "Ganda"),
    ("li", "Limburgan"),
    ("ln", "Lingala"),
    ("lo", "Lao"),
    ("lt", "Lithuanian"),
    ("lu", "Luba-Katanga"),
    ("lv", "Latvian"),
    ("mg", "Malagasy"),
    ("mh", "Marshallese"),
    ("mi", "Maori"),
    ("mk", "Macedonian"),
    ("ml", "Malayalam"),
    ("mn", "Mongolian"),
    ("mr", "Marathi"),
    ("ms", "Malay"),
    ("mt", "Maltese"),
    ("my", "Burmese"),
    ("na", "Nauru"),
    ("nb", "Bokmål, Norwegian"),
    ("nd", "Ndebele, North"),
    ("ne", "Nepali"),
    ("ng", "Ndonga"),
    ("nl", "Dutch"),
    ("nn", "Norwegian Nynorsk"),
    ("no", "Norwegian"),
    ("nr", "Ndebele, South"),
    ("nv", "Navajo"),
    ("ny", "Chichewa"),
    ("oc", "Occitan (post 1500)"),
    ("oj", "Ojibwa"),
    ("om", "Oromo"),
    ("or", "Oriya"),
    ("os", "Ossetian"),
    ("pa", "Panjabi"),
    ("pi", "Pali"),
    ("pl", "Polish"),
    ("ps", "Pushto"),
    ("pt", "Portuguese"),
    ("qu", "Quechua"),
    ("rm", "Romansh"),
    ("rn", "Rundi"),
    ("ro", "Romanian"),
    ("ru", "Russian"),
    ("rw", "Kinyarwanda"),
    ("sa", "Sanskrit"),
    ("sc", "Sardinian"),
    ("sd", "Sindhi"),
    ("se", "Northern Sami"),
    ("sg", "Sango"),
    ("si", "Sinhala"),
    ("sk", "Slovak"),
    ("sl", "Slovenian"),
    ("sm", "Samoan"),
    ("sn", "Shona"),
    ("so", "Somali"),
    ("sq", "Albanian"),
    ("sr", "Serbian"),
    ("ss", "Swati"),
    ("st", "Sotho, Southern"),
    ("su", "Sundanese"),
    ("sv", "Swedish"),
    ("sw", "Swahili"),
    ("ta", "Tamil"),
    ("te", "Telugu"),
    ("tg", "Tajik"),
    ("th", "Thai"),
    ("ti", "Tigrinya"),
    ("tk", "Turkmen"),
    ("tl", "Tagalog"),
    ("tn", "Tswana"),
    ("to", "Tonga (Tonga Islands)"),
    ("tr", "Turkish"),
    ("ts", "Tsonga"),
    ("tt", "Tatar"),
    ("tw", "Twi"),
    ("ty", "Tahitian"),
    ("ug", "Uighur"),
    ("uk", "Ukrainian"),
    ("ur", "Urdu"),
    ("uz", "Uzbek"),
    ("ve", "Venda"),
    ("vi", "Vietnamese"),
    ("vo", "Volapük"),
    ("wa", "Walloon"),
    ("wo", "Wolof"),
    ("xh", "Xhosa"),
    ("yi", "Yiddish"),
    ("yo", "Yoruba"),
    ("za", "Zhuang"),
    ("zh", "Chinese"),
    ("zu", "Zulu"),
];

/// Whether `tag` is an ISO 639-1 code, optionally followed by `-` and a region (two
/// uppercase letters or three digits): `en`, `en-GB`, `es-419`.
pub fn valid(tag: &str) -> bool {
    let (code, region) = match tag.split_once('-') {
        Some((code, region)) => (code, Some(region)),
        None => (tag, None),
    };
    let region_ok = region.is_none_or(|r| {
        (r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
            || (r.len() == 3 && r.bytes().all(|b| b.is_ascii_digit()))
    });
    region_ok && LANGUAGES.binary_search_by_key(&code, |(c, _)| c).is_ok()
}

/// Why `tag` is not a language code, with the code probably meant when there is one
/// (`english` -> `en`, `EN` -> `en`, `en_gb` -> `en-GB`).
pub fn problem(tag: &str) -> String {
    let mut message = "is not a language code: expected ISO 639-1 (two lowercase letters, \
                       e.g. `en`), optionally with a region (`en-GB`)"
        .to_owned();
    if let Some(meant) = meant(tag) {
        message.push_str(&format!("; did you mean {meant}?"));
    }
    message
}

/// The code probably meant, quoted, with its language's name when found by name.
fn meant(tag: &str) -> Option<String> {
    let normalised = match tag.split_once(['-', '_']) {
        Some((code, region)) => {
            format!(
                "{}-{}",
                code.to_ascii_lowercase(),
                region.to_ascii_uppercase()
            )
        }
        None => tag.to_ascii_lowercase(),
    };
    if valid(&normalised) {
        return Some(format!("`{normalised}`"));
    }
    let name = LANGUAGES
        .iter()
        .map(|(_, n)| *n)
        .find(|n| n.eq_ignore_ascii_case(tag))
        .or_else(|| suggest::nearest(tag, LANGUAGES.iter().map(|(_, n)| *n)))?;
    let (code, name) = LANGUAGES.iter().find(|(_, n)| *n == name)?;
    Some(format!("`{code}` ({name})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_for_binary_search() {
        assert!(LANGUAGES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(LANGUAGES.len(), 184);
    }

    #[test]
    fn codes_with_and_without_regions() {
        for ok in ["en", "es", "fr", "zh", "en-GB", "es-419", "pt-BR"] {
            assert!(valid(ok), "{ok}");
        }
        for bad in [
            "english", "EN", "en-gb", "en_GB", "xx", "e", "en-", "en-GBR", "",
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }

    #[test]
    fn suggests_the_code_meant() {
        assert!(
            problem("english").contains("did you mean `en` (English)?"),
            "{}",
            problem("english")
        );
        assert!(
            problem("Spansih").contains("`es` (Spanish)"),
            "{}",
            problem("Spansih")
        );
        assert!(problem("EN").contains("did you mean `en`?"));
        assert!(problem("en_gb").contains("did you mean `en-GB`?"));
        assert!(!problem("zzzzzz").contains("did you mean"));
    }
}
