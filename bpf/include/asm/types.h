/* Architecture-neutral stand-in for <asm/types.h>: the BPF target has no
 * arch directory of its own, and the program uses only fixed-width types. */
#include <asm-generic/types.h>
