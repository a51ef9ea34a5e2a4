/* Fixture: a guest program that the runtime calls and that calls the runtime (a call cycle). */
void rt_putc(char c);
void guest_main(void);

void guest_main(void) {
  rt_putc('x');
}
