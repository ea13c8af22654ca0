/*
 * leak_seen.c - leaks one tensor on purpose.  Registered (test/meson.build) only
 * in AddressSanitizer builds, as a test that must FAIL: LeakSanitizer has to
 * report the tensor.  With handle checks on, the registry of live handles
 * (core/handles.c) must not make the leaked header look referenced.
 */
#include "agrad/agrad.h"

int main(void) {
    ag_tensor *t = ag_ones(AG_SHAPE(3, 5), AG_F32);
    return t && ag_handle_checks() ? 0 : 0; /* t is never released */
}
