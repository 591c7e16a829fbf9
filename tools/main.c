/* main.c - placeholder */
#include <ballast/ballast.h>
#include <stdio.h>
int main(void) { puts(ballast_version()); return 0; }
