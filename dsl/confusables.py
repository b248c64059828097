"""Letters of other scripts that read as one Latin letter: the whole-script look-alikes.

A word written wholly in such letters (Cyrillic `аррӏе`, Cherokee or Lisu capitals) reads as a
Latin word to an approver and is another to the server: a domain, a user, a command. Unicode's
confusables (UTS #39, `confusables.txt`) name them; this is the part of that table where one letter
of a script other than Latin has one ASCII letter as its prototype, letters whose compatibility
form is already ASCII (fullwidth, mathematical) left out, since ``vocab`` flags those anywhere.
Taken from the ``confusables.json`` that ``confusable_homoglyphs`` 3.3.1 (MIT) ships, Unicode's
`confusables.txt` (Unicode License) as that release read it; the look-alike warning is the only
reader, so a table of 280 letters beats a dependency.
"""

from __future__ import annotations

__all__ = ["READS_AS_LATIN"]

# letter -> the ASCII letter it reads as, by script
READS_AS_LATIN: dict[str, str] = {
    # Greek
    "\u037a": "i", "\u037f": "J", "\u0391": "A", "\u0392": "B", "\u0395": "E", "\u0396": "Z",
    "\u0397": "H", "\u0399": "l", "\u039a": "K", "\u039c": "M", "\u039d": "N", "\u039f": "O",
    "\u03a1": "P", "\u03a4": "T", "\u03a5": "Y", "\u03a7": "X", "\u03b1": "a", "\u03b3": "y",
    "\u03b9": "i", "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c3": "o", "\u03c5": "u",
    "\u03d2": "Y", "\u03dc": "F", "\u03f1": "p", "\u03f2": "c", "\u03f3": "j", "\u03f9": "C",
    "\u03fa": "M", "\u1d26": "r", "\u1fbe": "i",
    # Cyrillic
    "\u0405": "S", "\u0406": "l", "\u0408": "J", "\u0410": "A", "\u0412": "B", "\u0415": "E",
    "\u041a": "K", "\u041c": "M", "\u041d": "H", "\u041e": "O", "\u0420": "P", "\u0421": "C",
    "\u0422": "T", "\u0423": "Y", "\u0425": "X", "\u042c": "b", "\u0430": "a", "\u0433": "r",
    "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0443": "y", "\u0445": "x",
    "\u0455": "s", "\u0456": "i", "\u0458": "j", "\u0461": "w", "\u0474": "V", "\u0475": "v",
    "\u04ae": "Y", "\u04af": "y", "\u04bb": "h", "\u04bd": "e", "\u04c0": "l", "\u04cf": "i",
    "\u0501": "d", "\u050c": "G", "\u051b": "q", "\u051c": "W", "\u051d": "w", "\ua647": "i",
    # Armenian
    "\u054d": "U", "\u054f": "S", "\u0555": "O", "\u0561": "w", "\u0563": "q", "\u0566": "q",
    "\u0570": "h", "\u0578": "n", "\u057c": "n", "\u057d": "u", "\u0581": "g", "\u0584": "f",
    "\u0585": "o",
    # Oriya
    "\u0b20": "O",
    # Malayalam
    "\u0d20": "o",
    # Myanmar
    "\u101d": "o",
    # Georgian
    "\u10e7": "y", "\u10ff": "o",
    # Ethiopic
    "\u1200": "U", "\u12d0": "O",
    # Cherokee
    "\u13a0": "D", "\u13a1": "R", "\u13a2": "T", "\u13a5": "i", "\u13a9": "Y", "\u13aa": "A",
    "\u13ab": "J", "\u13ac": "E", "\u13b3": "W", "\u13b7": "M", "\u13bb": "H", "\u13bd": "Y",
    "\u13c0": "G", "\u13c2": "h", "\u13c3": "Z", "\u13cf": "b", "\u13d2": "R", "\u13d4": "W",
    "\u13d5": "S", "\u13d9": "V", "\u13da": "S", "\u13de": "L", "\u13df": "C", "\u13e2": "P",
    "\u13e6": "K", "\u13e7": "d", "\u13f3": "G", "\u13f4": "B", "\uab75": "i", "\uab81": "r",
    "\uab83": "w", "\uab93": "z", "\uaba9": "v", "\uabaa": "s", "\uabaf": "c",
    # Canadian Syllabics
    "\u142f": "V", "\u144c": "U", "\u146d": "P", "\u146f": "d", "\u1472": "b", "\u148d": "J",
    "\u14aa": "L", "\u1541": "x", "\u157c": "H", "\u157d": "x", "\u1587": "R", "\u15af": "b",
    "\u15b4": "F", "\u15c5": "A", "\u15de": "D", "\u15ea": "D", "\u15f0": "M", "\u15f7": "B",
    # Runic
    "\u16b7": "X", "\u16c1": "l", "\u16d5": "K", "\u16d6": "M",
    # Double-Struck
    "\u213d": "y",
    # Coptic
    "\u2c85": "r", "\u2c8e": "H", "\u2c92": "l", "\u2c94": "K", "\u2c98": "M", "\u2c9a": "N",
    "\u2c9e": "O", "\u2c9f": "o", "\u2ca2": "P", "\u2ca3": "p", "\u2ca4": "C", "\u2ca5": "c",
    "\u2ca6": "T", "\u2ca8": "Y", "\u2cac": "X", "\u2cd0": "L",
    # Tifinagh
    "\u2d38": "V", "\u2d39": "E", "\u2d4f": "l", "\u2d54": "O", "\u2d55": "Q", "\u2d5d": "X",
    # Lisu
    "\ua4d0": "B", "\ua4d1": "P", "\ua4d2": "d", "\ua4d3": "D", "\ua4d4": "T", "\ua4d6": "G",
    "\ua4d7": "K", "\ua4d9": "J", "\ua4da": "C", "\ua4dc": "Z", "\ua4dd": "F", "\ua4df": "M",
    "\ua4e0": "N", "\ua4e1": "L", "\ua4e2": "S", "\ua4e3": "R", "\ua4e6": "V", "\ua4e7": "H",
    "\ua4ea": "W", "\ua4eb": "X", "\ua4ec": "Y", "\ua4ee": "A", "\ua4f0": "E", "\ua4f2": "l",
    "\ua4f3": "O", "\ua4f4": "U",
    # Bamum
    "\ua6df": "V",
    # Lycian
    "\U00010282": "B", "\U00010286": "E", "\U00010287": "F", "\U0001028a": "l", "\U00010290": "X", "\U00010292": "O",
    "\U00010295": "P", "\U00010296": "S", "\U00010297": "T",
    # Carian
    "\U000102a0": "A", "\U000102a1": "B", "\U000102a2": "C", "\U000102a5": "F", "\U000102ab": "O", "\U000102b0": "M",
    "\U000102b1": "T", "\U000102b2": "Y", "\U000102b4": "X", "\U000102cf": "H",
    # Old Italic/Permic
    "\U00010301": "B", "\U00010302": "C", "\U00010309": "l", "\U00010311": "M", "\U00010315": "T", "\U00010317": "X",
    # Deseret
    "\U00010404": "O", "\U00010415": "C", "\U0001041b": "L", "\U00010420": "S", "\U0001042c": "o", "\U0001043d": "c",
    "\U00010448": "s",
    # Osage
    "\U000104b4": "R", "\U000104c2": "O", "\U000104ce": "U", "\U000104ea": "o", "\U000104f6": "u",
    # Elbasan
    "\U00010513": "N", "\U00010516": "O", "\U00010518": "K", "\U0001051c": "C", "\U0001051d": "V", "\U00010525": "F",
    "\U00010526": "L", "\U00010527": "X",
    # Ahom
    "\U00011706": "v", "\U0001170a": "w", "\U0001170e": "w", "\U0001170f": "w",
    # Warang Citi
    "\U000118a0": "V", "\U000118a2": "F", "\U000118a3": "L", "\U000118a4": "Y", "\U000118a6": "E", "\U000118a9": "Z",
    "\U000118ae": "E", "\U000118b2": "L", "\U000118b5": "O", "\U000118b8": "U", "\U000118bc": "T", "\U000118c0": "v",
    "\U000118c1": "s", "\U000118c2": "F", "\U000118c3": "i", "\U000118c4": "z", "\U000118c8": "o", "\U000118d7": "o",
    "\U000118d8": "u", "\U000118dc": "y",
    # Miao
    "\U00016f08": "V", "\U00016f0a": "T", "\U00016f16": "L", "\U00016f28": "l", "\U00016f35": "R", "\U00016f3a": "S",
    "\U00016f40": "A", "\U00016f42": "U", "\U00016f43": "Y",
}
