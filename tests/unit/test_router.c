/* placeholder: being written; fails until replaced */
int main(void) { return 1; }
