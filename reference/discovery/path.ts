/** ZooKeeper provider paths (DISC-CONF-3). */

/** Whether `p` is a ZooKeeper path: absolute, no empty, `.` or `..` component, no trailing `/`. */
export function isZooKeeperPath(p: string): boolean {
  return p === '/' || (p.startsWith('/') && p.slice(1).split('/').every((c) => c !== '' && c !== '.' && c !== '..'));
}
