// shmhubctl: the command-line client of shmhubd. See commands.h, or run
// `shmhubctl --help`.
#include <iostream>

#include "client/ctl/commands.h"

int main(int argc, char** argv) {
  return shmhub::ctl::RunShmhubctl(argc, argv, std::cout, std::cerr);
}
