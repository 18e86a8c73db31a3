/**
 * Bearer-token authentication and scopes. Every route needs a key, except those marked `@Public()` (health,
 * the dashboard's static files, the OpenAPI document). A route needs `read` for GET and `write` otherwise.
 * The presented token is hashed and compared with every configured key's
 * digest in constant time (no early exit), so timing tells nothing about which key or how much of it matched.
 */
import { timingSafeEqual } from 'node:crypto';
import { type CanActivate, type ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { type ApiKey, type Scope, digestOf } from '../config';
import { ApiSettings } from './settings';
import { ApiError } from './errors';

const PUBLIC = 'sophia:public';

export const Public = () => SetMetadata(PUBLIC, true);

/** The key that authorized a request (set by the guard). */
export type AuthorizedRequest = Request & { apiKey?: ApiKey };

/** The configured key whose secret is `token`, comparing against every key. */
export function findKey(keys: readonly ApiKey[], token: string): ApiKey | undefined {
  const digest = digestOf(token);
  let found: ApiKey | undefined;
  for (const key of keys) {
    if (timingSafeEqual(key.digest, digest) && !found) found = key;
  }
  return found;
}

@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(ApiSettings) private readonly settings: ApiSettings,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, targets)) return true;
    const req = context.switchToHttp().getRequest<AuthorizedRequest>();
    const header = req.headers.authorization;
    if (!header) throw new ApiError(401, 'authorization', 'missing Authorization header: send `Authorization: Bearer <API key>`');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new ApiError(401, 'authorization', 'the Authorization header must be `Bearer <API key>`');
    const key = findKey(this.settings.config.keys, match[1]!);
    if (!key) throw new ApiError(401, 'authorization', 'unknown API key');
    const needed: Scope = req.method === 'GET' || req.method === 'HEAD' ? 'read' : 'write';
    if (!key.scopes.has(needed)) throw new ApiError(403, 'authorization', `API key ${key.name} lacks the ${needed} scope this route needs`);
    req.apiKey = key;
    return true;
  }
}
