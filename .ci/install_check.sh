#!/bin/sh
# Installs the build into a temporary prefix and builds a user program against
# it with pkg-config, as a user would.  Prints TAP lines.
set -u
build=${1:-build}
prefix=$(mktemp -d)
n=0
check() { # check NAME COMMAND...
    name=$1; shift
    n=$((n + 1))
    if "$@" >/tmp/agrad-install-check.log 2>&1; then echo "ok $n - $name"
    else echo "not ok $n - $name"; sed 's/^/# /' /tmp/agrad-install-check.log; fi
}
check "meson install into a prefix" meson install -C "$build" --destdir "$prefix" --no-rebuild
pc=$(dirname "$(find "$prefix" -name agrad.pc | head -n 1)")
root=$(find "$prefix" -name agrad.h -path '*include/agrad/*' | head -n 1 | sed 's|/include/agrad/agrad.h||')
cat >"$prefix/user.c" <<'C'
#include <agrad/agrad.h>
#include <stdio.h>
int main(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(3), 2.0, AG_F32), true);
    ag_tensor *y = ag_sum(ag_mul(x, x));
    int bad = !y || ag_backward(y) != AG_OK;
    double g = ag_get(ag_grad(x), (int64_t[]){0});
    ag_scope_end();
    printf("grad %g\n", g);
    return bad || g != 4.0;
}
C
check "a user program compiles with pkg-config --cflags --libs agrad" sh -c \
    "PKG_CONFIG_PATH=$pc cc -std=c11 -Wall -Wextra -Werror $prefix/user.c \$(PKG_CONFIG_PATH=$pc pkg-config --define-variable=prefix=$root --cflags --libs agrad) -o $prefix/user"
check "the user program runs against the installed shared library" sh -c \
    "LD_LIBRARY_PATH=\$(dirname \$(find $prefix -name 'libagrad.so' | head -n 1)) $prefix/user"
check "the shared library exports only ag_ symbols" sh -c \
    "! nm -D --defined-only \$(find $prefix -name 'libagrad.so' | head -n 1) | awk '{print \$3}' | grep -v '^ag_' | grep ."
echo "1..$n"
rm -rf "$prefix"
