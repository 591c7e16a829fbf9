/* consumer.c - placeholder */
#include <ballast/ballast.h>
int main(void) { return 0; }
