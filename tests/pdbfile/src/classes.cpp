// C++ types for the PDB reader's agreement test: classes with bases, a vtable, virtual bases,
// templates, nested types, static members, methods and scoped enums with narrow storage.
enum class Small : unsigned char { Zero, One, Max = 255 };
enum class Wide : long long { Low = -5, High = 0x100000000LL };

struct Base1 { int b1; virtual int get() { return b1; } };
struct Base2 { short b2; };
class Derived : public Base1, public Base2 {
public:
    static int s_count;
    long long d;
    Small small;
    int get() override { return b1 + d; }
    struct Nested { char n[5]; Wide w; } nested;
};
int Derived::s_count = 1;

struct VBase { int v; };
struct Left : virtual VBase { int l; };
struct Right : virtual VBase { int r; };
struct Diamond : Left, Right { int dd; };

template <typename T, int N> struct Array { T items[N]; int used; };
struct Holder { Array<char, 7> chars; Array<Derived *, 3> ptrs; int (Derived::*method)(); int Derived::*member; };

Derived g_derived;
Diamond g_diamond;
Holder g_holder;

extern "C" int main() { return g_derived.get() + g_diamond.dd + g_holder.chars.used; }
