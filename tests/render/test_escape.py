"""`escape_text`: what a terminal could act on becomes visible; everything else stays as it is.

The character classes come from the Unicode standard (C0/C1 controls: U+0000-001F, U+007F,
U+0080-009F; bidi embeddings/overrides U+202A-202E and isolates U+2066-2069 (UAX #9); line and
paragraph separators U+2028/2029; zero-width and BOM format characters), checked here one by one.
"""
import unicodedata

from pykd_ext.render.escape import escape_lines, escape_text


def test_every_c0_c1_and_del_is_escaped():
    for code in list(range(0x00, 0x20)) + [0x7F] + list(range(0x80, 0xA0)):
        assert escape_text("a%cb" % code) == "a\\x%02xb" % code


def test_bidi_separators_and_invisible_format_characters_are_escaped():
    for code in list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A)) + [
            0x2028, 0x2029, 0x200B, 0x200E, 0x200F, 0x061C, 0xFEFF, 0x00AD]:
        char = chr(code)
        assert unicodedata.category(char) in ("Cf", "Zl", "Zp"), hex(code)
        assert escape_text("x" + char) == ("x\\x%02x" if code < 0x100 else "x\\u%04x") % code
    assert escape_text("tag\U000E0041") == "tag\\U000e0041"      # TAG LATIN CAPITAL LETTER A (hides text)
    assert escape_text("\ud800") == "\\ud800"                     # a lone surrogate cannot even be encoded


def test_terminal_sequences_become_visible_text():
    assert escape_text("\x1b[2J\x1b]0;title\x07") == "\\x1b[2J\\x1b]0;title\\x07"
    assert escape_text("evil\r\nnote: forged") == "evil\\x0d\\x0anote: forged"
    assert escape_text("\x9b31m") == "\\x9b31m"


def test_printable_text_and_backslashes_stay():
    for text in ("C:\\Windows\\System32\\lsass.exe", "\\Device\\HarddiskVolume3\\x", "Défense – 防御 ☃",
                 "100% <not in dump> & \"quoted\"", ""):
        assert escape_text(text) == text
    once = escape_text("a\x1bb\u202e")
    assert escape_text(once) == once                              # escaping twice changes nothing
    assert list(escape_lines(["ok", "a\x00"])) == ["ok", "a\\x00"]
