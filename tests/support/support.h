/* support.h - placeholder */
#ifndef BALLAST_TEST_SUPPORT_H
#define BALLAST_TEST_SUPPORT_H
#endif
