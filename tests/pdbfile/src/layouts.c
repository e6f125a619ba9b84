/* Types for the PDB reader's agreement test (tests/pdb/test_clang_pdbs.py): every layout
 * feature a kernel structure uses, compiled by clang-cl and linked by lld-link into a PDB whose
 * layouts llvm-pdbutil reads independently. Each type is reached from a global so it is emitted. */
typedef int (*callback_t)(int code, const char *text);

enum color { RED, GREEN = 5, BLUE, NEGATIVE = -3, BIG = 0x7fffffff };
enum flags8 { F_NONE = 0, F_ONE = 1, F_HIGH = 0x80 };

struct list_entry { struct list_entry *next, *prev; };

struct bits {
    unsigned int a : 1;
    unsigned int b : 3;
    unsigned int c : 28;
    unsigned char d : 2;
    unsigned char e : 6;
    unsigned long long wide : 40;
    unsigned long long rest : 24;
    int signed_bits : 5;
};

union value {
    long long q;
    double d;
    unsigned char raw[8];
    struct { unsigned int low, high; } parts;
};

struct outer {
    int id;
    union {                      /* anonymous union: its members become the outer's */
        void *ptr;
        unsigned long long number;
    };
    struct {                     /* anonymous struct */
        short x, y;
    };
    struct inner { char tag[3]; int count; } nested;
    struct inner inners[4];
    int matrix[2][3];
    callback_t on_event;
    int (*table[2])(void);
    enum color color;
    struct bits flags;
    union value val;
    struct list_entry links;
    const volatile unsigned short cv_field;
    struct opaque *handle;       /* never defined: a pointer to an incomplete type */
    char trailing[];
};

#pragma pack(push, 1)
struct packed { char c; int i; short s; long long q; };
#pragma pack(pop)

struct aligned_member { char c; __declspec(align(16)) int a; };

struct outer g_outer;
struct packed g_packed;
struct aligned_member g_aligned;
enum flags8 g_flags;
union value g_value;
int g_counter = 42;
static int s_hidden = 7;

int helper(int code, const char *text) { return code + (text ? text[0] : 0) + s_hidden; }

int main(void) {
    g_outer.on_event = helper;
    return g_outer.id + g_packed.i + g_aligned.a + (int)g_flags + (int)g_value.q + g_counter;
}
