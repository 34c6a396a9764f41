//! Device class (`desktop|mobile|tablet|bot|other`) from the uap-core families and the raw
//! user agent.
//!
//! uap-core names devices (`"iPhone"`, `"Samsung SM-T820"`) but not their class, so the
//! class comes from these rules, applied in order (first hit wins):
//!
//! 1. **bot**: the bot classifier or uap-core's `Spider` device said so, or the user agent
//!    is missing (empty or whitespace only: real browsers always send one).
//! 2. **other**: a TV, set-top box or console (`SmartTV`, `HbbTV`,
//!    `CrKey`, `DTV`, `NETRANGE`, `CE-HTML`, `AFT*` Fire TV models, `PlayStation`, `Xbox`,
//!    `Nintendo`, `Roku`, `AppleTV`, `BRAVIA`, `Web0S`, `Tizen ... TV` tokens, the uap-core
//!    brand `Generic_Inettv`); a watch or TV OS family (`WatchOS`, `tvOS`, `ATV OS X`,
//!    `Chromecast Linux`, `GoogleTV`, `Roku`, `WebTV`).
//! 3. **tablet**: uap-core device `iPad*`, `Kindle*` or `Generic Tablet` (or a brand ending
//!    in `_Tablet`); `iPad`, `Kindle`, `PlayBook` in the user agent; Android **without**
//!    the `Mobile` token (Google's rule: Chrome for Android sends `Mobile` on phones only,
//!    <https://developer.chrome.com/docs/multidevice/user-agent/>; applied to browser user
//!    agents, those starting `Mozilla/` or `Opera/`, since app clients such as `Dalvik/` or
//!    `Instagram ... Android` never send the token); a `Tablet` token on a non-Windows OS
//!    (Firefox for Android tablets; Windows' `Tablet PC 2.0` appears on desktops and is
//!    ignored).
//! 4. **mobile**: a `Mobi` token (MDN's recommendation,
//!    <https://developer.mozilla.org/en-US/docs/Web/HTTP/Browser_detection_using_the_user_agent>);
//!    a mobile OS family (iOS, Android, Windows Phone, BlackBerry, Symbian, KaiOS, ...);
//!    a uap-core phone device (`iPhone`, `iPod`, `Generic Smartphone`, `Generic Feature Phone`);
//!    feature-phone / pocket-PC tokens (`MIDP`, `CLDC`, `J2ME`, `UP.Browser`, `WAP`,
//!    `Windows CE`, `PPC;`); Android's ` Build/` token on a generic Linux OS; or a uap-core
//!    device brand (a handset maker: uap-core identifies phones and tablets, never PCs except
//!    Apple's `Mac`) on a non-desktop OS.
//! 5. **desktop**: a desktop OS family (Windows, Mac OS X, Linux distributions, Chrome OS,
//!    the BSDs, Solaris).
//! 6. **other**: everything else (unknown OS, libraries, embedded devices).
//!
//! Known limit: iPadOS 13+ Safari sends the macOS user agent by default, so those iPads
//! count as desktop; no user-agent rule can tell them apart.

use super::user_agent::UaParts;

/// Device class of a click. Dimension value via [`DeviceClass::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceClass {
    /// Desktop or laptop computer.
    Desktop,
    /// Phone (smartphone or feature phone).
    Mobile,
    /// Tablet or e-reader.
    Tablet,
    /// Crawler, link-preview fetcher or automation client, or no user agent at all.
    Bot,
    /// TV, console or unknown user agent.
    Other,
}

impl DeviceClass {
    /// Dimension value: `desktop|mobile|tablet|bot|other`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Bot => "bot",
            DeviceClass::Other => "other",
        }
    }

    /// Inverse of [`DeviceClass::as_str`].
    pub fn from_str_opt(s: &str) -> Option<DeviceClass> {
        Some(match s {
            "desktop" => DeviceClass::Desktop,
            "mobile" => DeviceClass::Mobile,
            "tablet" => DeviceClass::Tablet,
            "bot" => DeviceClass::Bot,
            "other" => DeviceClass::Other,
            _ => return None,
        })
    }
}

const TV_TOKENS: &[&str] = &[
    "SmartTV",
    "SMART-TV",
    "Smart-TV",
    "SMARTTV",
    "HbbTV",
    "CrKey",
    "GoogleTV",
    "AppleTV",
    "Apple TV",
    "BRAVIA",
    "Web0S",
    "NetCast",
    "PlayStation",
    "PLAYSTATION",
    "Xbox",
    "Nintendo",
    "Roku",
    "(DTV)",
    "InettvBrowser",
    "NETRANGE",
    "CE-HTML",
    "DirectFB",
    "WebTV",
    "AFTB",
    "AFTS",
    "AFTM",
    "AFTT",
    "AFTN",
    "AFTK",
    "AFTR",
    "AFTA",
    "AFTG",
];

const OTHER_OS: &[&str] = &["WatchOS", "tvOS", "ATV OS X", "Chromecast Linux", "GoogleTV", "Roku", "WebTV", "Wear OS"];

const FEATURE_PHONE_TOKENS: &[&str] = &["MIDP", "CLDC", "J2ME", "UP.Browser", "WAP", "Windows CE", "PPC;"];

const MOBILE_OS: &[&str] = &[
    "iOS",
    "Android",
    "Windows Phone",
    "Windows Mobile",
    "Windows CE",
    "BlackBerry OS",
    "Symbian OS",
    "Symbian^3",
    "Symbian^3 Anna",
    "Symbian^3 Belle",
    "KaiOS",
    "Firefox OS",
    "Bada",
    "webOS",
    "Palm OS",
    "MeeGo",
    "Maemo",
    "Sailfish",
    "Tizen",
    "HarmonyOS",
    "Ubuntu Touch",
    "Nokia Series 40",
    "Nokia Series 30 Plus",
    "Brew MP",
    "BREW",
    "JME",
];

const DESKTOP_OS: &[&str] = &[
    "Mac OS X",
    "Mac OS",
    "macOS",
    "Linux",
    "Ubuntu",
    "Kubuntu",
    "Fedora",
    "Debian",
    "Red Hat",
    "CentOS",
    "Mint",
    "SUSE",
    "openSUSE",
    "Gentoo",
    "Mandriva",
    "Slackware",
    "Arch Linux",
    "Chrome OS",
    "Chromecast OS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "DragonFly BSD",
    "Solaris",
    "SunOS",
    "Haiku",
    "BeOS",
    "OS/2",
    "AmigaOS",
    "Windows",
];

fn is_tv_or_console(ua: &str, os: &str, brand: &str) -> bool {
    TV_TOKENS.iter().any(|t| ua.contains(t)) || (ua.contains("Tizen") && ua.contains("TV")) || brand == "Generic_Inettv" || OTHER_OS.contains(&os)
}

fn is_windows(os: &str) -> bool {
    os.starts_with("Windows") && !MOBILE_OS.contains(&os)
}

/// Applies the rules in the module documentation.
pub fn classify_device(parts: &UaParts, ua: &str, is_bot: bool) -> DeviceClass {
    if is_bot || super::user_agent::is_missing(ua) {
        return DeviceClass::Bot;
    }
    let os = parts.os_family.as_str();
    let dev = parts.device_family.as_str();
    let brand = parts.device_brand.as_deref().unwrap_or("");
    if is_tv_or_console(ua, os, brand) {
        return DeviceClass::Other;
    }

    let tablet = dev.starts_with("iPad")
        || dev.starts_with("Kindle")
        || dev == "Generic Tablet"
        || brand.ends_with("_Tablet")
        || ua.contains("iPad")
        || ua.contains("Kindle")
        || ua.contains("PlayBook")
        || (os == "Android" && (ua.starts_with("Mozilla/") || ua.starts_with("Opera/")) && !ua.contains("Mobile"))
        || (ua.contains("Tablet") && !is_windows(os));
    if tablet {
        return DeviceClass::Tablet;
    }
    let desktop_os = is_windows(os) || DESKTOP_OS.contains(&os);
    let handset_brand = !brand.is_empty() && brand != "Spider" && dev != "Mac" && dev != "Other";
    let mobile = ua.contains("Mobi")
        || MOBILE_OS.contains(&os)
        || matches!(dev, "iPhone" | "iPod" | "Generic Smartphone" | "Generic Feature Phone")
        || FEATURE_PHONE_TOKENS.iter().any(|t| ua.contains(t))
        || (os == "Linux" && ua.contains(" Build/"))
        || (handset_brand && !desktop_os);
    if mobile {
        return DeviceClass::Mobile;
    }
    if desktop_os {
        return DeviceClass::Desktop;
    }
    DeviceClass::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_round_trips() {
        for c in [DeviceClass::Desktop, DeviceClass::Mobile, DeviceClass::Tablet, DeviceClass::Bot, DeviceClass::Other] {
            assert_eq!(DeviceClass::from_str_opt(c.as_str()), Some(c));
        }
        assert_eq!(DeviceClass::from_str_opt("phone"), None);
    }
}
