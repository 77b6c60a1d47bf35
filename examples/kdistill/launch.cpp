// The local launcher behind `kdistill train --nproc N`.
#include "launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/train/distributed.h"

extern char** environ;

namespace kdistill::cli {
namespace {

// This command's arguments, without --nproc and its value.
std::vector<std::string> arguments_without_nproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t start = 0; start < all.size();) {
    const size_t end = all.find('\0', start);
    args.push_back(all.substr(start, end - start));
    start = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
    } else if (args[i].rfind("--nproc=", 0) != 0) {
      kept.push_back(args[i]);
    }
  }
  return kept;
}

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// A worker process and what its stderr said.
struct Worker {
  pid_t pid = -1;
  int fd = -1;  // the read end of its stderr
  int status = 0;
  std::string pending, error;  // a partial line; its first "error: " line, without the prefix

  void take(const std::string& line) {
    if (line.rfind("error: ", 0) == 0) {
      if (error.empty()) error = line.substr(7);
    } else {
      std::cerr << line << "\n";
    }
  }
  // Reads what is there; false at the end of the stream.
  bool read_some() {
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) {
      if (!pending.empty()) take(pending);
      pending.clear();
      ::close(fd);
      fd = -1;
      return false;
    }
    pending.append(buf, static_cast<size_t>(n));
    for (size_t end; (end = pending.find('\n')) != std::string::npos;) {
      take(pending.substr(0, end));
      pending.erase(0, end + 1);
    }
    return true;
  }
  void drain() {
    while (fd >= 0 && read_some()) {
    }
  }
};

}  // namespace

int launch_workers(int nproc) {
  const auto args = arguments_without_nproc();
  const int64_t port = free_loopback_port();
  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    bool ours = false;
    for (const char* k : {"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=", "LOCAL_WORLD_SIZE=",
                          "TORCHELASTIC_USE_AGENT_STORE=", "TORCHELASTIC_RESTART_COUNT="}) {
      ours = ours || kv.rfind(k, 0) == 0;
    }
    if (!ours) base_env.push_back(kv);
  }
  // Each worker's stderr comes through a pipe: log lines are passed on as they come, and the
  // failing worker's "error:" line becomes the command's one error line.
  std::vector<Worker> workers(static_cast<size_t>(nproc));
  const pid_t launcher = ::getpid();
  for (int rank = 0; rank < nproc; ++rank) {
    auto env = base_env;
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    int fds[2];
    // Close-on-exec: a later worker must not inherit an earlier one's pipe.
    check(::pipe2(fds, O_CLOEXEC) == 0, "--nproc: cannot create a pipe: ", std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a worker never outlives its launcher
      if (::getppid() != launcher) ::_exit(1);
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execve("/proc/self/exe", argv.data(), envp.data());
      std::cerr << "error: cannot start the worker: " << std::strerror(errno) << "\n";
      ::_exit(1);
    }
    ::close(fds[1]);
    if (pid < 0) {
      ::close(fds[0]);
      for (auto& w : workers) {
        if (w.pid > 0) ::kill(w.pid, SIGTERM);
      }
      fail("--nproc: cannot start worker ", rank, ": ", std::strerror(errno));
    }
    workers[rank].pid = pid;
    workers[rank].fd = fds[0];
  }

  int failed = -1, left = nproc;
  std::vector<int> failures;  // in the order the launcher saw them end
  while (left > 0) {
    std::vector<pollfd> polls;
    for (auto& w : workers) {
      if (w.fd >= 0) polls.push_back({w.fd, POLLIN, 0});
    }
    if (!polls.empty() && ::poll(polls.data(), polls.size(), 200) > 0) {
      for (const auto& p : polls) {
        if (p.revents == 0) continue;
        for (auto& w : workers) {
          if (w.fd == p.fd) w.read_some();
        }
      }
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, polls.empty() ? 0 : WNOHANG)) > 0) {
      for (int r = 0; r < nproc; ++r) {
        auto& w = workers[r];
        if (w.pid != pid) continue;
        w.pid = -1;
        w.status = status;
        w.drain();
        --left;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
          failures.push_back(r);
          if (failed < 0) {
            failed = r;
            for (auto& o : workers) {
              if (o.pid > 0) ::kill(o.pid, SIGTERM);
            }
          }
        }
      }
      if (polls.empty()) break;
    }
    if (pid < 0 && errno == ECHILD) break;
  }
  if (failed < 0) return 0;
  // The cause, not its echo: workers that end together are reaped in any order, and a peer's
  // collective fails when the cause stops ("rank R stopped, or did not arrive"). Prefer a worker
  // that failed by itself.
  for (int r : failures) {
    const auto& w = workers[r];
    if (WIFEXITED(w.status) && w.error.find("stopped, or did not arrive") == std::string::npos) {
      failed = r;
      break;
    }
  }
  const auto& w = workers[failed];
  std::cerr << "error: worker rank " << failed << " of " << nproc << " " << how_it_ended(w.status)
            << (w.error.empty() ? "" : ": " + w.error) << "; the other workers were stopped\n";
  return 1;
}

}  // namespace kdistill::cli
