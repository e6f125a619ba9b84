"""The bug check table: parsed from the reference's own page formats, shipped with attribution.

Independent source: excerpts of Microsoft's pages (MicrosoftDocs/windows-driver-docs,
CC-BY-4.0) in the three table formats the generator must read, and the shipped TSV itself.
"""
import os

from pykd_ext.batch import bugcodes
from pykd_ext.batch.gen_bugcodes import parameters_of, role_of

# bug-check-0x7e--system-thread-exception-not-handled.md (markdown table)
PAGE_7E = """## SYSTEM_THREAD_EXCEPTION_NOT_HANDLED parameters

| Parameter | Description |
|---|---|
| 1 | The exception code that wasn't handled. |
| 2 | The address where the exception occurred. |
| 3 | The address of the exception record. |
| 4 | The address of the context record. |

## Cause
"""
# bug-check-0xd1--driver-irql-not-less-or-equal.md (HTML table)
PAGE_D1 = """## DRIVER\\_IRQL\\_NOT\\_LESS\\_OR\\_EQUAL parameters

<table>
<tbody>
<tr class="odd">
<td align="left"><p>1</p></td>
<td align="left"><p>Memory referenced.</p></td>
</tr>
<tr class="even">
<td align="left"><p>4</p></td>
<td align="left"><p>Address that referenced memory. Use <a href="x.md"><strong>ln</strong> (list nearest symbols)</a> on this address to see the name of the function.</p></td>
</tr>
</tbody>
</table>
"""
# bug-check-0x133-dpc-watchdog-violation.md (one row per value of parameter 1)
PAGE_133 = """## DPC\\_WATCHDOG\\_VIOLATION Parameters

*Parameter 1* indicates the type of violation. The meaning of the other parameters depends on the value of *Parameter 1*.

|Parameter 1|Parameter 2|Parameter 3|Parameter 4|Cause of Error|
|---------- |---------- |---------- |---------- |------------- |
|0|The DPC time count (in ticks)|The DPC time allotment (in ticks).|cast to nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK, which contains additional information regarding this single DPC timeout|A single DPC or ISR exceeded its time allotment. The offending component can usually be identified with a stack trace.|

## Cause
"""


def test_three_page_formats() -> None:
    params, subcodes = parameters_of(PAGE_7E)
    assert params[2] == "The address where the exception occurred." and not subcodes
    assert [role_of(params[n]) for n in (1, 2, 3, 4)] == [
        "exception_code", "fault_address", "exception_record", "context_record"]
    params, _ = parameters_of(PAGE_D1)
    assert params == {1: "Memory referenced.", 4: "Address that referenced memory."}
    assert (role_of(params[1]), role_of(params[4])) == ("referenced_address", "fault_address")
    params, subcodes = parameters_of(PAGE_133)
    assert params[1] == "Parameter 1 indicates the type of violation."
    assert subcodes == [{"value": "0", "param2": "The DPC time count (in ticks)",
                         "param3": "The DPC time allotment (in ticks).",
                         "param4": "cast to nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK, which contains "
                                   "additional information regarding this single DPC timeout",
                         "cause": "A single DPC or ISR exceeded its time allotment."}]


def test_shipped_table_matches_the_pages_and_names_its_source() -> None:
    # the shipped rows of these codes hold what the page excerpts above say
    entry = bugcodes.lookup(0x7E)
    assert entry is not None and entry.parameters == (
        "The exception code that wasn't handled.", "The address where the exception occurred.",
        "The address of the exception record.", "The address of the context record.")
    assert bugcodes.meanings(0x133, [0, 0, 0, 0])[1] == "The DPC time count (in ticks)"
    assert bugcodes.parameter_with_role(0xD1, "fault_address") == 3
    with open(bugcodes.CODES_FILE, encoding="utf-8") as handle:
        head = handle.read(600)
    assert "MicrosoftDocs/windows-driver-docs" in head and "CC-BY-4.0" in head
    notice = os.path.join(os.path.dirname(bugcodes.CODES_FILE), "NOTICE-bugcheck-codes")
    with open(notice, encoding="utf-8") as handle:
        assert "Creative Commons Attribution 4.0" in handle.read()
    # the _M variants carry their base code's parameters ("same meaning and parameters")
    assert bugcodes.lookup(0x1000007E).parameters == entry.parameters
