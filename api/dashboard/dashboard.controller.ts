/**
 * The dashboard: static files from `api/dashboard/public/` and uPlot from node_modules, served by the API
 * itself (no build step, no separate server). The files carry no run data — the page asks for an API key and
 * calls the same authenticated routes as any client — so they are public.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Controller, Get, Param, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';
import { Public } from '../common/auth';
import { ApiError } from '../common/errors';

const PUBLIC_DIR = path.join(__dirname, 'public');
const UPLOT_DIR = path.dirname(require.resolve('uplot/package.json'));

/** Every file the dashboard may serve, by URL name (nothing else on disk is reachable). */
const FILES: Record<string, { file: string; type: string }> = {
  'index.html': { file: path.join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  'util.js': { file: path.join(PUBLIC_DIR, 'util.js'), type: 'text/javascript; charset=utf-8' },
  'api-client.js': { file: path.join(PUBLIC_DIR, 'api-client.js'), type: 'text/javascript; charset=utf-8' },
  'charts.js': { file: path.join(PUBLIC_DIR, 'charts.js'), type: 'text/javascript; charset=utf-8' },
  'report.js': { file: path.join(PUBLIC_DIR, 'report.js'), type: 'text/javascript; charset=utf-8' },
  'run-view.js': { file: path.join(PUBLIC_DIR, 'run-view.js'), type: 'text/javascript; charset=utf-8' },
  'app.js': { file: path.join(PUBLIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  'style.css': { file: path.join(PUBLIC_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  'uPlot.iife.min.js': { file: path.join(UPLOT_DIR, 'dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { file: path.join(UPLOT_DIR, 'dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

const CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'";

@Public()
@ApiExcludeController()
@Controller()
export class DashboardController {
  private readonly cache = new Map<string, Buffer>();

  @Get()
  root(@Res() res: Response): void {
    res.redirect(302, '/dashboard/');
  }

  @Get('dashboard')
  index(@Res() res: Response): void {
    this.send('index.html', res);
  }

  @Get('dashboard/:file')
  file(@Param('file') file: string, @Res() res: Response): void {
    this.send(file, res);
  }

  private send(name: string, res: Response): void {
    const entry = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
    if (!entry) throw new ApiError(404, 'path.file', `no dashboard file ${name}`);
    let bytes = this.cache.get(name);
    if (!bytes) {
      bytes = readFileSync(entry.file);
      this.cache.set(name, bytes);
    }
    res.setHeader('Content-Type', entry.type);
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-cache');
    res.end(bytes);
  }
}
