/* Architecture-neutral stand-in for <asm/bitsperlong.h> (see types.h). */
#include <asm-generic/bitsperlong.h>
