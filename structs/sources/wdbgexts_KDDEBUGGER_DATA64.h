/*
 * KDDEBUGGER_DATA64 and its header DBGKD_DEBUG_DATA_HEADER64: the debugger data block ("KDBG")
 * that the Windows kernel exports to debuggers.  The structure is NOT in the kernel's PDB; its
 * layout is the public declaration in Microsoft's wdbgexts.h (Debugging Tools for Windows /
 * Windows SDK and WDK).
 *
 * This file is the project's *source fact* for that layout: field names, C types and order, one
 * field per line, re-stated from the public declaration (interface facts, no code).  The generator
 * `python -m pykd_ext.layouts.gen_kdbg` parses it and writes structs/kddebugger_data64.py.
 *
 * Sources (the field order was checked against each of them):
 *   1. Microsoft Learn, "KDDEBUGGER_DATA64 structure (wdbgexts.h)" - the published field list,
 *      Header .. PteBase.
 *   2. ReactOS, sdk/include/psdk/wdbgexts.h (reactos/reactos) - the same list with the
 *      NTDDI_VERSION groups, including the Windows 10 RS5 Retpoline* additions.
 *   3. mingw-w64 dbgeng.h, DEBUG_DATA_* index constants - for IDebugDataSpaces::ReadDebuggerData
 *      these equal the byte offsets of the fields KernBase (24) .. KdPrintBufferSize (720); the
 *      generator's offsets are tested against them (tests/targets/test_kdbg_layout.py).
 * Licence: the declaration is a public interface of Windows; this re-statement carries no
 * copyrightable expression beyond names and types and is distributed with pykd-ext (MIT).
 *
 * Grammar the generator accepts: `typedef struct NAME { TYPE Field; ... } NAME;`, types ULONG64,
 * ULONG, USHORT, UCHAR, LIST_ENTRY64 and previously declared structs, and `USHORT Field:N`
 * bitfields.  Comments are ignored.  Natural (MSVC x64) alignment applies.
 * Each "since" comment names the release that appended the group; a kernel fills the block only
 * up to Header.Size, so later groups may be absent.
 */

typedef struct _DBGKD_DEBUG_DATA_HEADER64 {
    LIST_ENTRY64 List;
    ULONG OwnerTag;
    ULONG Size;
} DBGKD_DEBUG_DATA_HEADER64;

typedef struct _KDDEBUGGER_DATA64 {
    DBGKD_DEBUG_DATA_HEADER64 Header;
    ULONG64 KernBase;
    ULONG64 BreakpointWithStatus;
    ULONG64 SavedContext;
    USHORT ThCallbackStack;
    USHORT NextCallback;
    USHORT FramePointer;
    USHORT PaeEnabled:1;
    ULONG64 KiCallUserMode;
    ULONG64 KeUserCallbackDispatcher;
    ULONG64 PsLoadedModuleList;
    ULONG64 PsActiveProcessHead;
    ULONG64 PspCidTable;
    ULONG64 ExpSystemResourcesList;
    ULONG64 ExpPagedPoolDescriptor;
    ULONG64 ExpNumberOfPagedPools;
    ULONG64 KeTimeIncrement;
    ULONG64 KeBugCheckCallbackListHead;
    ULONG64 KiBugcheckData;
    ULONG64 IopErrorLogListHead;
    ULONG64 ObpRootDirectoryObject;
    ULONG64 ObpTypeObjectType;
    ULONG64 MmSystemCacheStart;
    ULONG64 MmSystemCacheEnd;
    ULONG64 MmSystemCacheWs;
    ULONG64 MmPfnDatabase;
    ULONG64 MmSystemPtesStart;
    ULONG64 MmSystemPtesEnd;
    ULONG64 MmSubsectionBase;
    ULONG64 MmNumberOfPagingFiles;
    ULONG64 MmLowestPhysicalPage;
    ULONG64 MmHighestPhysicalPage;
    ULONG64 MmNumberOfPhysicalPages;
    ULONG64 MmMaximumNonPagedPoolInBytes;
    ULONG64 MmNonPagedSystemStart;
    ULONG64 MmNonPagedPoolStart;
    ULONG64 MmNonPagedPoolEnd;
    ULONG64 MmPagedPoolStart;
    ULONG64 MmPagedPoolEnd;
    ULONG64 MmPagedPoolInformation;
    ULONG64 MmPageSize;
    ULONG64 MmSizeOfPagedPoolInBytes;
    ULONG64 MmTotalCommitLimit;
    ULONG64 MmTotalCommittedPages;
    ULONG64 MmSharedCommit;
    ULONG64 MmDriverCommit;
    ULONG64 MmProcessCommit;
    ULONG64 MmPagedPoolCommit;
    ULONG64 MmExtendedCommit;
    ULONG64 MmZeroedPageListHead;
    ULONG64 MmFreePageListHead;
    ULONG64 MmStandbyPageListHead;
    ULONG64 MmModifiedPageListHead;
    ULONG64 MmModifiedNoWritePageListHead;
    ULONG64 MmAvailablePages;
    ULONG64 MmResidentAvailablePages;
    ULONG64 PoolTrackTable;
    ULONG64 NonPagedPoolDescriptor;
    ULONG64 MmHighestUserAddress;
    ULONG64 MmSystemRangeStart;
    ULONG64 MmUserProbeAddress;
    ULONG64 KdPrintCircularBuffer;
    ULONG64 KdPrintCircularBufferEnd;
    ULONG64 KdPrintWritePointer;
    ULONG64 KdPrintRolloverCount;
    ULONG64 MmLoadedUserImageList;
    /* since NT 5.1 (XP) */
    ULONG64 NtBuildLab;
    ULONG64 KiNormalSystemCall;
    /* since NT 5.0 QFE (hotfix) */
    ULONG64 KiProcessorBlock;
    ULONG64 MmUnloadedDrivers;
    ULONG64 MmLastUnloadedDriver;
    ULONG64 MmTriageActionTaken;
    ULONG64 MmSpecialPoolTag;
    ULONG64 KernelVerifier;
    ULONG64 MmVerifierData;
    ULONG64 MmAllocatedNonPagedPool;
    ULONG64 MmPeakCommitment;
    ULONG64 MmTotalCommitLimitMaximum;
    ULONG64 CmNtCSDVersion;
    /* since NT 5.1 (XP) */
    ULONG64 MmPhysicalMemoryBlock;
    ULONG64 MmSessionBase;
    ULONG64 MmSessionSize;
    ULONG64 MmSystemParentTablePage;
    /* since Server 2003 */
    ULONG64 MmVirtualTranslationBase;
    USHORT OffsetKThreadNextProcessor;
    USHORT OffsetKThreadTeb;
    USHORT OffsetKThreadKernelStack;
    USHORT OffsetKThreadInitialStack;
    USHORT OffsetKThreadApcProcess;
    USHORT OffsetKThreadState;
    USHORT OffsetKThreadBStore;
    USHORT OffsetKThreadBStoreLimit;
    USHORT SizeEProcess;
    USHORT OffsetEprocessPeb;
    USHORT OffsetEprocessParentCID;
    USHORT OffsetEprocessDirectoryTableBase;
    USHORT SizePrcb;
    USHORT OffsetPrcbDpcRoutine;
    USHORT OffsetPrcbCurrentThread;
    USHORT OffsetPrcbMhz;
    USHORT OffsetPrcbCpuType;
    USHORT OffsetPrcbVendorString;
    USHORT OffsetPrcbProcStateContext;
    USHORT OffsetPrcbNumber;
    USHORT SizeEThread;
    ULONG64 KdPrintCircularBufferPtr;
    ULONG64 KdPrintBufferSize;
    ULONG64 KeLoaderBlock;
    USHORT SizePcr;
    USHORT OffsetPcrSelfPcr;
    USHORT OffsetPcrCurrentPrcb;
    USHORT OffsetPcrContainedPrcb;
    USHORT OffsetPcrInitialBStore;
    USHORT OffsetPcrBStoreLimit;
    USHORT OffsetPcrInitialStack;
    USHORT OffsetPcrStackLimit;
    USHORT OffsetPrcbPcrPage;
    USHORT OffsetPrcbProcStateSpecialReg;
    USHORT GdtR0Code;
    USHORT GdtR0Data;
    USHORT GdtR0Pcr;
    USHORT GdtR3Code;
    USHORT GdtR3Data;
    USHORT GdtR3Teb;
    USHORT GdtLdt;
    USHORT GdtTss;
    USHORT Gdt64R3CmCode;
    USHORT Gdt64R3CmTeb;
    ULONG64 IopNumTriageDumpDataBlocks;
    ULONG64 IopTriageDumpDataBlocks;
    /* since Vista (Longhorn) */
    ULONG64 VfCrashDataBlock;
    ULONG64 MmBadPagesDetected;
    ULONG64 MmZeroedPageSingleBitErrorsDetected;
    /* since Windows 7 */
    ULONG64 EtwpDebuggerData;
    USHORT OffsetPrcbContext;
    /* since Windows 8 */
    USHORT OffsetPrcbMaxBreakpoints;
    USHORT OffsetPrcbMaxWatchpoints;
    ULONG OffsetKThreadStackLimit;
    ULONG OffsetKThreadStackBase;
    ULONG OffsetKThreadQueueListEntry;
    ULONG OffsetEThreadIrpList;
    USHORT OffsetPrcbIdleThread;
    USHORT OffsetPrcbNormalDpcState;
    USHORT OffsetPrcbDpcStack;
    USHORT OffsetPrcbIsrStack;
    USHORT SizeKDPC_STACK_FRAME;
    /* since Windows 8.1 */
    USHORT OffsetKPriQueueThreadListHead;
    USHORT OffsetKThreadWaitReason;
    /* since Windows 10 1607 (RS1) */
    USHORT Padding;
    ULONG64 PteBase;
    /* since Windows 10 1809 (RS5) */
    ULONG64 RetpolineStubFunctionTable;
    ULONG RetpolineStubFunctionTableSize;
    ULONG RetpolineStubOffset;
    ULONG RetpolineStubSize;
} KDDEBUGGER_DATA64;
