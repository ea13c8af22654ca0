/*
 * on_valgrind.h - RUNNING_ON_VALGRIND for the tests that leave out their slowest
 * cases under valgrind: valgrind's own client request where <valgrind/valgrind.h>
 * is installed (true only under valgrind), else 0.
 */
#ifndef AGRAD_TEST_ON_VALGRIND_H
#define AGRAD_TEST_ON_VALGRIND_H

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#endif
