"""Path spellings the forge plants: one home for the NT-path -> DOS-path rule, shared by the
kernel-object and user-object planters (which must not import each other)."""


def dos_path(nt_path: str) -> str:
    """"\\\\Device\\\\HarddiskVolume3\\\\Windows\\\\x.exe" -> "C:\\\\Windows\\\\x.exe" (what a PEB holds)."""
    prefix = "\\Device\\HarddiskVolume3\\"
    if nt_path.startswith(prefix):
        return "C:\\" + nt_path[len(prefix):]
    return nt_path
