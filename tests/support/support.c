/* support.c - placeholder */
#include "support.h"
int bl_test_support_placeholder;
