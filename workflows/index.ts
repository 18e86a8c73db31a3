/**
 * The workflow bundle's entry point: every workflow a worker registers, exported by name.
 */
export { stackSmoke, smokeProgressQuery } from './smoke';
